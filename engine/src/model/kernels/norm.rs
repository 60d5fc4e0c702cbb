//! The per-token work around a layer's attention, fused into one pass a token: q and k split
//! out of the fused projection, RMS-normed over all heads, rotated (RoPE, rotate-half: the
//! first half of each head against the second), q scaled, and q, k and v laid out heads-first;
//! and the residual adds with their norms. candle runs these as a dozen ops, and its RoPE on
//! one thread.
//!
//! Plain Rust compiled for AVX2 + FMA (`#[target_feature]`), left to the compiler to vectorize.

use super::pool::{for_each_range, SharedOut};
use super::{HeadShapes, Heads};

/// Tokens below which the work stays on the calling thread.
const PARALLEL_TOKENS: usize = 8;

/// Splits `qkv` (`[t, (heads + 2 kv_heads) · hd]`) into normed, rotated, heads-first q, k, v.
pub(super) fn split_heads(qkv: &[f32], t: usize, s: &HeadShapes) -> Heads {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    let (h, g, hd) = (s.heads, s.kv_heads, s.head_dim);
    let width = (h + 2 * g) * hd;
    assert!(qkv.len() == t * width && hd % 2 == 0);
    assert!(s.cos.len() >= t * hd / 2 && s.sin.len() >= t * hd / 2);
    let mut out = Heads {
        q: vec![0f32; h * t * hd],
        k: vec![0f32; g * t * hd],
        v: vec![0f32; g * t * hd],
    };
    let ptrs = (
        SharedOut(out.q.as_mut_ptr()),
        SharedOut(out.k.as_mut_ptr()),
        SharedOut(out.v.as_mut_ptr()),
    );
    let token = |tok: usize| {
        let (q, k, v) = (&ptrs.0, &ptrs.1, &ptrs.2);
        let row = &qkv[tok * width..(tok + 1) * width];
        let (cos, sin) = (
            &s.cos[tok * hd / 2..][..hd / 2],
            &s.sin[tok * hd / 2..][..hd / 2],
        );
        // SAFETY: AVX2/FMA checked above; token tok's rows of q, k and v (row tok of each head)
        // are written by this call only.
        unsafe {
            norm_rotate(
                &row[..h * hd],
                s.q_norm,
                s.eps,
                cos,
                sin,
                s.scale,
                q.ptr(),
                t,
                tok,
                hd,
            );
            norm_rotate(
                &row[h * hd..(h + g) * hd],
                s.k_norm,
                s.eps,
                cos,
                sin,
                1.0,
                k.ptr(),
                t,
                tok,
                hd,
            );
            for (head, src) in row[(h + g) * hd..].chunks_exact(hd).enumerate() {
                std::ptr::copy_nonoverlapping(src.as_ptr(), v.ptr().add((head * t + tok) * hd), hd);
            }
        }
    };
    if t < PARALLEL_TOKENS {
        (0..t).for_each(token);
    } else {
        for_each_range(t, |tokens| tokens.for_each(token));
    }
    out
}

/// One token's q (or k): RMS-normed over all its heads, each head rotated, scaled, written to
/// row `tok` of each head of `out` (`[heads, t, hd]`).
///
/// # Safety
/// AVX2/FMA present; `out` holds `x.len() / hd` heads of `t` rows of `hd`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn norm_rotate(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    cos: &[f32],
    sin: &[f32],
    scale: f32,
    out: *mut f32,
    t: usize,
    tok: usize,
    hd: usize,
) {
    let half = hd / 2;
    let r = rms_factor(x, eps) * scale;
    for (head, (x, w)) in x.chunks_exact(hd).zip(weight.chunks_exact(hd)).enumerate() {
        let dst = std::slice::from_raw_parts_mut(out.add((head * t + tok) * hd), hd);
        let (d1, d2) = dst.split_at_mut(half);
        let (x1, x2) = x.split_at(half);
        let (w1, w2) = w.split_at(half);
        for i in 0..half {
            let a = x1[i] * w1[i] * r;
            let b = x2[i] * w2[i] * r;
            d1[i] = a * cos[i] - b * sin[i];
            d2[i] = a * sin[i] + b * cos[i];
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)`.
#[inline(always)]
fn rms_factor(x: &[f32], eps: f32) -> f32 {
    // Eight partial sums, so the compiler keeps a vector of them.
    let mut parts = [0f32; 8];
    let body = x.len() - x.len() % 8;
    for chunk in x[..body].chunks_exact(8) {
        for (p, v) in parts.iter_mut().zip(chunk) {
            *p += v * v;
        }
    }
    let sum: f32 = parts.iter().sum::<f32>() + x[body..].iter().map(|v| v * v).sum::<f32>();
    1.0 / (sum / x.len() as f32 + eps).sqrt()
}

/// `x + rms_norm(y) · weight`, a row of `weight.len()` at a time (the residual after attention
/// and after the MLP).
pub(super) fn add_norm(x: &[f32], y: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    let width = weight.len();
    assert!(x.len() == y.len() && x.len().is_multiple_of(width));
    let rows = x.len() / width;
    let mut out = vec![0f32; x.len()];
    let shared = SharedOut(out.as_mut_ptr());
    let row = |r: usize| {
        // SAFETY: AVX2/FMA checked above; row r of the output is written by this call only.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(shared.ptr().add(r * width), width);
            add_norm_row(
                &x[r * width..][..width],
                &y[r * width..][..width],
                weight,
                eps,
                dst,
            );
        }
    };
    if rows < PARALLEL_TOKENS {
        (0..rows).for_each(row);
    } else {
        for_each_range(rows, |range| range.for_each(row));
    }
    out
}

/// # Safety
/// AVX2/FMA present.
#[target_feature(enable = "avx2,fma")]
unsafe fn add_norm_row(x: &[f32], y: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let r = rms_factor(y, eps);
    for i in 0..out.len() {
        out[i] = x[i] + y[i] * r * weight[i];
    }
}
