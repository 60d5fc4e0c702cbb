//! The model's threads yield to the audio side. Where JACK runs without real-time scheduling (a
//! dummy server with `--no-realtime`, a desktop without rtprio), the JACK server and the
//! callback thread compete with the model for the cores like any other thread; so the decoder
//! thread and the model's worker threads run at a lower priority (nice +[`MODEL_NICE`]) and the
//! audio side is scheduled first. With real-time JACK this changes nothing: SCHED_FIFO threads
//! preempt them anyway. Measured in docs/BENCHMARKS.md "Live".

/// How much lower the model's threads run (a nice value: 19 is the lowest). Measured on a 2-core
/// box with a dummy `--no-realtime` server, 2 model threads: 78–109 server xruns in 40 s at +0,
/// 17–30 at +10, 20–33 at +19; no late events at any.
pub const MODEL_NICE: i32 = 10;

/// Lowers the calling thread's priority by [`MODEL_NICE`]; false if the system refused (the
/// model then runs at the normal priority, as before).
pub fn lower_this_thread() -> bool {
    // SAFETY: plain libc calls on the calling thread (Linux's nice is per thread, and a thread
    // inherits it from the thread that starts it).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return false;
        }
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + MODEL_NICE).min(19)) == 0
    }
}

/// Starts candle's worker pool (the `--threads` workers every kernel runs on) from a thread at
/// the model's priority, so the workers inherit it. Call before any model work.
pub fn start_model_pool() {
    let _ = std::thread::Builder::new()
        .name("midicopilot-pool-start".into())
        .spawn(|| {
            lower_this_thread();
            candle_core::utils::barrier_pool();
        })
        .map(|h| h.join());
}
