//! The allocation guard of the real-time callback.
//!
//! [`CountingAlloc`] wraps the system allocator and counts every allocation or free made by a
//! thread while it is inside an [`RtSection`] (the JACK process callback enters one for its whole
//! body). The count is in the run's report (`rt.allocations`) and the live tests assert it is
//! zero; unlike an aborting guard it cannot take a gig down. The binary and the live test
//! binaries install it as their `#[global_allocator]`; where it is not installed (a library user
//! with their own allocator) the count simply stays zero and [`installed`] says so.
//!
//! Cost outside a section: one thread-local `Cell<bool>` read per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

thread_local! {
    static IN_RT: Cell<bool> = const { Cell::new(false) };
}

static RT_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting what real-time sections allocate or free.
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn check(&self) {
        // `try_with`: during thread teardown the slot may be gone; then we are not in a section.
        if IN_RT.try_with(Cell::get).unwrap_or(false) {
            RT_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` unchanged; the check only touches a thread-local
// `Cell<bool>` (const-initialised, no lazy allocation) and an atomic.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check();
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.check();
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check();
        System.realloc(ptr, layout, new_size)
    }
}

/// Marks the current thread as real-time until dropped (sections nest: the outer one wins).
pub struct RtSection {
    was: bool,
}

impl RtSection {
    #[inline]
    pub fn enter() -> Self {
        let was = IN_RT.try_with(|c| c.replace(true)).unwrap_or(false);
        Self { was }
    }
}

impl Drop for RtSection {
    #[inline]
    fn drop(&mut self) {
        let was = self.was;
        let _ = IN_RT.try_with(|c| c.set(was));
    }
}

/// Allocations and frees counted inside real-time sections since [`self_test`] (the self-test's
/// own are not counted).
pub fn rt_allocations() -> u64 {
    RT_ALLOCATIONS
        .load(Ordering::Relaxed)
        .saturating_sub(BASELINE.load(Ordering::Relaxed))
}

static BASELINE: AtomicU64 = AtomicU64::new(0);

/// Prove the guard is live: allocate on purpose inside a section and see it counted. Returns
/// whether [`CountingAlloc`] is the global allocator (the report says so); the probe's own counts
/// are excluded from [`rt_allocations`]. Call once at start, before the callback runs.
pub fn self_test() -> bool {
    let before = RT_ALLOCATIONS.load(Ordering::Relaxed);
    {
        let _rt = RtSection::enter();
        let probe = std::hint::black_box(Box::new([0u8; 32]));
        drop(probe);
    }
    let after = RT_ALLOCATIONS.load(Ordering::Relaxed);
    BASELINE.fetch_add(after - before, Ordering::Relaxed);
    let ok = after > before;
    INSTALLED.store(ok, Ordering::Relaxed);
    ok
}

/// What the last [`self_test`] found.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}
