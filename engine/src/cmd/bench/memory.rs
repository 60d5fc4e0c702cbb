//! The memory side of `bench`: the decode floor's streaming read bandwidth (a buffer several
//! times the last-level cache) and this process's resident memory from /proc.

use std::time::Instant;

/// A memory figure of this process from /proc/self/status in MiB (`VmHWM`: peak resident set;
/// `VmRSS`: resident now; `RssAnon`: resident and not file-backed).
pub fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Peak resident set of this process in MiB (VmHWM), if /proc says.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM")
}

/// Streaming read bandwidth in GB/s on `threads` threads: each sums its share of a buffer several
/// times the last-level cache (at least 256 MiB); the best of a few passes.
pub fn read_bandwidth_gbs(threads: usize) -> f64 {
    let bytes = (4 * last_level_cache_bytes().unwrap_or(32 << 20)).max(256 << 20);
    let words = vec![1u64; bytes / 8];
    let chunk = words.len().div_ceil(threads.max(1));
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let parts: Vec<_> = words
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().fold(0u64, |a, &w| a.wrapping_add(w))))
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(sum);
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// The largest CPU cache this Linux machine reports (sysfs), in bytes.
fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("size")).ok())
        .filter_map(|s| {
            let s = s.trim();
            let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: usize = n.parse().ok()?;
            Some(match unit {
                "K" => n << 10,
                "M" => n << 20,
                "G" => n << 30,
                _ => n,
            })
        })
        .max()
}
