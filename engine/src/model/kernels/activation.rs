//! The MLP's gate: `silu(gate) · up` from the fused gate-and-up product, in one pass (candle
//! narrows, applies silu and multiplies in three, each writing a new tensor).

use super::pool::{for_each_range, SharedOut};
use super::x86;

/// Rows below which the work stays on the calling thread.
const PARALLEL_ROWS: usize = 8;

/// `gate_up` is `[t, 2 · inter]` (gate, then up, in each row): returns `[t, inter]`.
pub(super) fn silu_mul(gate_up: &[f32], t: usize, inter: usize) -> Vec<f32> {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    assert_eq!(gate_up.len(), t * 2 * inter);
    let mut out = vec![0f32; t * inter];
    let row = |r: usize, dst: &mut [f32]| {
        let src = &gate_up[r * 2 * inter..(r + 1) * 2 * inter];
        let (gate, up) = src.split_at(inter);
        // SAFETY: AVX2 checked above; the three slices are `inter` long.
        unsafe { x86::silu_mul(gate, up, dst) };
    };
    if t < PARALLEL_ROWS {
        for (r, dst) in out.chunks_exact_mut(inter).enumerate() {
            row(r, dst);
        }
    } else {
        let shared = SharedOut(out.as_mut_ptr());
        for_each_range(t, |rows| {
            for r in rows {
                // SAFETY: row r of the output is written by this range only.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(r * inter), inter) };
                row(r, dst);
            }
        });
    }
    out
}
