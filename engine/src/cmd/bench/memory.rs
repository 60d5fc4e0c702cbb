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
/// times the last-level cache (at least 256 MiB) with the widest loads the CPU has; the best of a
/// few passes.
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
                .map(|part| s.spawn(move || sum_words(part)))
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(sum);
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// The wrapping sum of `words`, read as fast as this CPU reads: with 256-bit loads where it has
/// AVX2 (the compiler's x86-64 baseline, 128-bit, reads a core's share slower than the kernels
/// do, which would put the floor too low).
fn sum_words(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return unsafe { sum_words_avx2(words) };
    }
    sum_words_any(words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_words_avx2(words: &[u64]) -> u64 {
    sum_words_any(words)
}

/// Sixteen independent sums, so the compiler keeps four vectors of them in flight.
#[inline(always)]
fn sum_words_any(words: &[u64]) -> u64 {
    let mut acc = [0u64; 16];
    let mut chunks = words.chunks_exact(16);
    for chunk in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(w));
    acc.iter().fold(tail, |a, &w| a.wrapping_add(w))
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
