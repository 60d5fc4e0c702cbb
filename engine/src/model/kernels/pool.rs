//! Sharing a kernel's work out over candle's barrier pool (the `--threads` workers, the calling
//! thread among them), so the engine never runs a second set of spinning workers beside candle's.

use std::ops::Range;

/// An output that several threads write disjoint parts of.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub *mut f32);

impl SharedOut {
    /// The pointer (a method, so closures capture the whole `Sync` value, not the field).
    pub(super) fn ptr(&self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the kernels give every thread its own rows of the output; nothing reads it meanwhile.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Runs `f` over `0..items`, in contiguous ranges handed to the pool's threads as they free up.
pub(super) fn for_each_range(items: usize, f: impl Fn(Range<usize>) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(items, f)
}
