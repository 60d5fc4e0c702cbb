//! A few rows of activations times a weight matrix (a decode step): the weight rows are shared
//! out over the threads and streamed once per tile of activation rows.
//!
//! Q8_0 weights meet activations quantized per block of 32 (int8 products, as ggml and candle
//! do); f16 and f32 weights meet the f32 activations with FMA.

use super::packed::GROUP_ROWS;
use super::pool::{for_each_range, SharedOut};
use super::x86::{dense_row, dense_tile, q8_group, quantize_row_q8, DenseWeight, Q8Rows, Q8_BLOCK};
use super::WeightRows;

/// Weight rows a unit of work covers (a multiple of the 4-row tile).
const UNIT_ROWS: usize = 16;

/// `y = x Wᵀ` for `m` rows of `x` (`m × k`, row-major): `m × n`, row-major.
///
/// Callers check [`super::cpu_has_avx2`] first.
pub(super) fn gemv(w: &WeightRows, x: &[f32], m: usize) -> Vec<f32> {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    let (n, k) = (w.n(), w.k());
    assert_eq!(x.len(), m * k, "activations of the wrong width");
    let mut y = vec![0f32; m * n];
    let out = SharedOut(y.as_mut_ptr());
    let units = n.div_ceil(UNIT_ROWS);
    match w {
        WeightRows::Q8 { qs, scales, .. } => {
            let q = QuantizedRows::new(x, m, k);
            let x = q.view();
            let blocks = k / Q8_BLOCK;
            for_each_range(n.div_ceil(GROUP_ROWS), |groups| {
                for g in groups {
                    let qs = qs[g * blocks * GROUP_ROWS * 32..].as_ptr();
                    let scales = scales[g * blocks * GROUP_ROWS..].as_ptr();
                    let rows = GROUP_ROWS.min(n - g * GROUP_ROWS);
                    // SAFETY: AVX2/FMA/F16C checked above; the group's blocks are in `qs` and
                    // `scales`; each group writes its own columns of y.
                    unsafe {
                        q8_group_rows(qs, scales, &x, m, rows, out.ptr().add(g * GROUP_ROWS), n)
                    }
                }
            });
        }
        WeightRows::F16 { values, .. } => dense(values, x, m, n, k, units, out),
        WeightRows::F32 { values, .. } => dense(values, x, m, n, k, units, out),
    }
    y
}

/// Activation rows quantized per block of 32.
struct QuantizedRows {
    qs: Vec<i8>,
    abs: Vec<i8>,
    d: Vec<f32>,
    blocks: usize,
}

impl QuantizedRows {
    fn new(x: &[f32], m: usize, k: usize) -> Self {
        let blocks = k / Q8_BLOCK;
        let mut q = Self {
            qs: vec![0; m * k],
            abs: vec![0; m * k],
            d: vec![0.0; m * blocks],
            blocks,
        };
        // SAFETY: AVX2/FMA/F16C checked by the caller; the buffers are sized for x.
        unsafe { quantize_row_q8(x, &mut q.qs, &mut q.abs, &mut q.d) };
        q
    }

    fn view(&self) -> Q8Rows<'_> {
        Q8Rows {
            qs: &self.qs,
            abs: &self.abs,
            d: &self.d,
            blocks: self.blocks,
        }
    }
}

/// One packed group times every activation row, up to 4 at a time; writes `y[t * n + r]` for
/// the group's first `rows` rows.
///
/// # Safety
/// AVX2/FMA/F16C present; the group's blocks at `qs` and `scales`; `y` has room for `m` rows of
/// `n` from this group's first column.
unsafe fn q8_group_rows(
    qs: *const i8,
    scales: *const half::f16,
    x: &Q8Rows,
    m: usize,
    rows: usize,
    y: *mut f32,
    n: usize,
) {
    let mut t = 0;
    while t < m {
        let mut tile = [[0f32; GROUP_ROWS]; 4];
        let take = (m - t).min(4);
        match take {
            1 => q8_group::<1>(qs, scales, x, t, &mut tile),
            2 => q8_group::<2>(qs, scales, x, t, &mut tile),
            3 => q8_group::<3>(qs, scales, x, t, &mut tile),
            _ => q8_group::<4>(qs, scales, x, t, &mut tile),
        }
        for (i, out) in tile.iter().take(take).enumerate() {
            std::ptr::copy_nonoverlapping(out.as_ptr(), y.add((t + i) * n), rows);
        }
        t += take;
    }
}

/// Dense (f16 or f32) weight rows times every activation row, shared out by units.
fn dense<W: DenseWeight + Sync>(
    values: &[W],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    units: usize,
    out: SharedOut,
) {
    if m == 1 {
        for_each_range(units, |range| {
            for r in range.start * UNIT_ROWS..(range.end * UNIT_ROWS).min(n) {
                // SAFETY: AVX2/FMA/F16C checked by the caller; row r of `values` exists; each
                // unit writes its own entries of y.
                unsafe { *out.ptr().add(r) = dense_row(values.as_ptr().add(r * k), x) };
            }
        });
        return;
    }
    // Several activation rows: 2 weight rows × up to 4 activation rows a tile.
    for_each_range(units, |range| {
        let rows = range.start * UNIT_ROWS..(range.end * UNIT_ROWS).min(n);
        let mut r = rows.start;
        while r < rows.end {
            let pair = rows.end - r >= 2;
            let mut t = 0;
            while t < m {
                let take = (m - t).min(4);
                // SAFETY: AVX2/FMA/F16C checked by the caller; rows r.. of `values` exist; each
                // unit writes its own columns of y.
                unsafe {
                    let (wr, yr) = (values.as_ptr().add(r * k), out.ptr().add(r));
                    if pair {
                        dense_rows::<W, 2>(wr, k, x, t, take, yr, n);
                    } else {
                        dense_rows::<W, 1>(wr, k, x, t, take, yr, n);
                    }
                }
                t += take;
            }
            r += if pair { 2 } else { 1 };
        }
    });
}

/// [`dense_tile`] for `R` weight rows and the `take` (1 to 4) activation rows from `t`.
///
/// # Safety
/// As [`dense_tile`].
unsafe fn dense_rows<W: DenseWeight, const R: usize>(
    w: *const W,
    k: usize,
    x: &[f32],
    t: usize,
    take: usize,
    y: *mut f32,
    n: usize,
) {
    match take {
        1 => dense_tile::<W, R, 1>(w, k, x, t, y, n),
        2 => dense_tile::<W, R, 2>(w, k, x, t, y, n),
        3 => dense_tile::<W, R, 3>(w, k, x, t, y, n),
        _ => dense_tile::<W, R, 4>(w, k, x, t, y, n),
    }
}
