//! The model's threads run below the audio side (src/live/priority.rs): the pool's workers,
//! started from a lowered thread, inherit its nice value; the caller keeps its own. Its own test
//! binary, so nothing else has started candle's pool first.

use midicopilot_engine::live::priority::{lower_this_thread, start_model_pool, MODEL_NICE};

/// Field 19 of /proc/self/task/TID/stat: the thread's nice value.
fn nice_of(task: &std::path::Path) -> i32 {
    let stat = std::fs::read_to_string(task.join("stat")).expect("stat");
    // The name in parentheses may hold spaces: count the fields after its closing one.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    after
        .split(' ')
        .nth(16)
        .expect("nice")
        .parse()
        .expect("a number")
}

fn this_thread_nice() -> i32 {
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    nice_of(&std::path::PathBuf::from(format!("/proc/self/task/{tid}")))
}

/// The nice value of each of candle's pool workers that has named itself.
fn pool_workers_nice() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("candle-bp-"))
        })
        .map(|t| nice_of(&t.path()))
        .collect()
}

#[test]
fn the_pool_and_the_decoder_run_below_the_caller() {
    std::env::set_var("CANDLE_NUM_THREADS", "3");
    let before = this_thread_nice();
    start_model_pool();
    assert_eq!(this_thread_nice(), before, "the caller keeps its priority");
    // A worker names itself once it runs, so on a busy box a just-spawned one may still be
    // unnamed: wait for both names (a missing worker still fails, after the deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let workers = loop {
        let workers = pool_workers_nice();
        if workers.len() >= 2 || std::time::Instant::now() > deadline {
            break workers;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(
        workers.len(),
        2,
        "CANDLE_NUM_THREADS=3: the caller and two workers"
    );
    let lowered = (before + MODEL_NICE).min(19);
    assert!(
        workers.iter().all(|&n| n == lowered),
        "{workers:?}, expected {lowered}"
    );

    let decoder = std::thread::spawn(|| (lower_this_thread(), this_thread_nice()))
        .join()
        .expect("thread");
    assert_eq!(decoder, (true, lowered));
}
