//! Many rows of activations times a weight matrix (a prefill, a flush), blocked as BLIS blocks a
//! matrix product: the activations are packed once into panels of 6 rows; each thread takes a
//! block of 128 weight rows, widens it to f32 a 256-deep slice at a time into panels of 16 rows
//! that stay in its L2 cache, and runs a 6 × 16 FMA kernel over every activation panel against
//! them. Widening as part of the packing reads each weight once per product, in whatever format
//! it is held. (Slicing the weights, not the activations, keeps the threads' reads apart.)

use std::cell::RefCell;

use super::packed::GROUP_ROWS;
use super::pool::{for_each_range, SharedOut};
use super::x86::{kernel_6x16, pack_dense_rows, pack_q8_panel, DenseWeight, Q8_BLOCK};
use super::WeightRows;

/// Activation rows in a panel (the kernel's rows).
const MR: usize = 6;
/// Weight rows in a panel (the kernel's columns).
const NR: usize = 16;
/// Depth of one packed slice: a 16-row weight panel of it is 16 KiB, in L1 beside the
/// activation panel.
const KC: usize = 256;
/// Weight rows a thread takes at a time: their packed slice is 128 KiB, in L2.
const NC: usize = 128;

thread_local! {
    /// A thread's packed weight slice, kept between calls.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y = x Wᵀ` for `m` rows of `x` (`m × k`, row-major): `m × n`, row-major.
pub(super) fn gemm(w: &WeightRows, x: &[f32], m: usize) -> Vec<f32> {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    let (n, k) = (w.n(), w.k());
    assert_eq!(x.len(), m * k, "activations of the wrong width");
    let panels = m.div_ceil(MR);
    let a = pack_activations(x, m, k);
    let mut y = vec![0f32; m * n];
    let out = SharedOut(y.as_mut_ptr());
    for_each_range(n.div_ceil(NC), |blocks| {
        PACKED.with_borrow_mut(|packed| {
            for block in blocks {
                let first = block * NC;
                let cols = NC.min(n - first);
                let col_panels = cols.div_ceil(NR);
                for depth in (0..k).step_by(KC) {
                    let kc = KC.min(k - depth);
                    packed.resize(col_panels * kc * NR, 0.0);
                    pack_weights(w, first, cols, depth, kc, packed);
                    for panel in 0..panels {
                        let ap = &a[panel * MR * k + depth * MR..][..kc * MR];
                        let rows = MR.min(m - panel * MR);
                        for cp in 0..col_panels {
                            let bp = &packed[cp * kc * NR..][..kc * NR];
                            let col = first + cp * NR;
                            // SAFETY: AVX2/FMA checked above; the tile (rows from panel · MR,
                            // columns col..col + NR clipped to n) lies in y and belongs to this
                            // thread's block of columns.
                            unsafe {
                                kernel_6x16(
                                    kc,
                                    ap.as_ptr(),
                                    bp.as_ptr(),
                                    NR,
                                    out.ptr().add(panel * MR * n + col),
                                    n,
                                    rows,
                                    NR.min(n - col),
                                )
                            };
                        }
                    }
                }
            }
        });
    });
    y
}

/// `x` (`m × k`) as panels of `MR` rows, each stored depth-major (`[k][MR]`), the last padded
/// with zero rows.
fn pack_activations(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut a = vec![0f32; panels * MR * k];
    let shared = SharedOut(a.as_mut_ptr());
    for_each_range(panels, |range| {
        for panel in range {
            // SAFETY: each panel's MR · k values are written by this range only.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(panel * MR * k), MR * k) };
            for r in 0..MR.min(m - panel * MR) {
                let row = &x[(panel * MR + r) * k..][..k];
                for (p, &v) in row.iter().enumerate() {
                    dst[p * MR + r] = v;
                }
            }
        }
    });
    a
}

/// Weight rows `first..first + cols`, depths `depth..depth + kc`, widened to f32 as panels of
/// `NR` rows stored depth-major (`[kc][NR]`), the last padded with zero rows.
fn pack_weights(
    w: &WeightRows,
    first: usize,
    cols: usize,
    depth: usize,
    kc: usize,
    packed: &mut [f32],
) {
    match w {
        WeightRows::Q8 { qs, scales, k, .. } => {
            let blocks = k / Q8_BLOCK;
            let groups = qs.len() / (blocks * GROUP_ROWS * Q8_BLOCK);
            for cp in 0..cols.div_ceil(NR) {
                let panel = &mut packed[cp * kc * NR..][..kc * NR];
                for half in 0..NR / GROUP_ROWS {
                    let group = (first + cp * NR) / GROUP_ROWS + half;
                    if group >= groups || group * GROUP_ROWS >= first + cols {
                        for p in 0..kc {
                            panel[p * NR + half * GROUP_ROWS..][..GROUP_ROWS].fill(0.0);
                        }
                        continue;
                    }
                    let at = group * blocks + depth / Q8_BLOCK;
                    // SAFETY: AVX2 checked by the caller; blocks depth / 32.. of this group
                    // exist (depth + kc ≤ k, a multiple of 32 in whole blocks).
                    unsafe {
                        pack_q8_panel(
                            qs[at * GROUP_ROWS * Q8_BLOCK..].as_ptr(),
                            scales[at * GROUP_ROWS..].as_ptr(),
                            kc / Q8_BLOCK,
                            panel[half * GROUP_ROWS..].as_mut_ptr(),
                            NR,
                        )
                    };
                }
            }
        }
        WeightRows::F32 { values, k, .. } => pack_dense(values, *k, first, cols, depth, kc, packed),
        WeightRows::F16 { values, k, .. } => pack_dense(values, *k, first, cols, depth, kc, packed),
    }
}

/// Dense (f32 or f16) weight rows into panels, eight rows at a time.
fn pack_dense<W: DenseWeight>(
    values: &[W],
    k: usize,
    first: usize,
    cols: usize,
    depth: usize,
    kc: usize,
    packed: &mut [f32],
) {
    for cp in 0..cols.div_ceil(NR) {
        let panel = &mut packed[cp * kc * NR..][..kc * NR];
        for half in 0..NR / 8 {
            let row = cp * NR + half * 8;
            let rows = cols.saturating_sub(row).min(8);
            if rows == 0 {
                for p in 0..kc {
                    panel[p * NR + half * 8..][..8].fill(0.0);
                }
                continue;
            }
            // SAFETY: AVX2/F16C checked by the caller of `gemm`; rows first + row.. (`rows` of
            // them) hold depths depth..depth + kc; the panel holds kc steps of NR.
            unsafe {
                pack_dense_rows(
                    values.as_ptr().add((first + row) * k + depth),
                    k,
                    rows,
                    kc,
                    panel[half * 8..].as_mut_ptr(),
                    NR,
                )
            };
        }
    }
}
