//! The kernels against plain scalar references, on shapes that are not multiples of the tiles
//! (rows, packed groups, slices, query blocks), with grouped-query attention and f16.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use super::*;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `x Wᵀ` in f64.
fn reference(w: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for t in 0..m {
        for r in 0..n {
            let dot: f64 = (0..k)
                .map(|i| w[r * k + i] as f64 * x[t * k + i] as f64)
                .sum();
            y[t * n + r] = dot as f32;
        }
    }
    y
}

/// The activations as the int8 path sees them: per block of 32, round(x · 127 / amax) (ties to
/// even, as `cvtps2dq`) times amax / 127.
fn quantized(x: &[f32]) -> Vec<f32> {
    x.chunks(32)
        .flat_map(|block| {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let d = amax / 127.0;
            block.iter().map(move |v| (v * inv).round_ties_even() * d)
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: [{i}] {g} against {w} (scale {scale})"
        );
    }
}

fn require_avx2() {
    assert!(
        cpu_has_avx2(),
        "this test checks the AVX2 kernels; this CPU lacks AVX2, FMA or F16C"
    );
}

const SHAPES: [(usize, usize); 5] = [(1, 32), (7, 96), (17, 64), (130, 288), (40, 800)];
const ROWS: [usize; 9] = [1, 2, 3, 4, 5, 9, 16, 17, 23];

#[test]
fn q8_products_match_a_scalar_reference() {
    require_avx2();
    for (n, k) in SHAPES {
        let w = values(n * k, n as u64 * 31 + k as u64);
        let q = QTensor::quantize(
            &Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        let widened: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let packed = PackedQ8::from_blocks(&q.data().unwrap(), n, k).expect("Q8_0 blocks");
        assert_eq!(packed.storage_bytes(), n.div_ceil(8) * 8 * k / 32 * 34);
        for m in ROWS.into_iter().chain([40]) {
            let x = values(m * k, m as u64 + 7);
            let got = matmul(&packed.rows(), &x, m).expect("kernels run");
            // Few rows stream the weights against int8 activations; many widen the weights.
            let x_seen = if m <= GEMV_MAX_ROWS { quantized(&x) } else { x };
            let want = reference(&widened, &x_seen, m, n, k);
            assert_close(&got, &want, 1e-5, &format!("q8 {m}×{k} · {n}×{k}"));
        }
    }
}

#[test]
fn dense_products_match_a_scalar_reference() {
    require_avx2();
    for (n, k) in SHAPES.into_iter().chain([(9, 13), (33, 40)]) {
        let w = values(n * k, n as u64 * 17 + k as u64);
        let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let widened: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
        for m in ROWS.into_iter().chain([40]) {
            let x = values(m * k, m as u64 + 3);
            let rows = WeightRows::F32 { values: &w, n, k };
            let got = matmul(&rows, &x, m).expect("kernels run");
            assert_close(
                &got,
                &reference(&w, &x, m, n, k),
                1e-5,
                &format!("f32 m {m}"),
            );
            let rows = WeightRows::F16 {
                values: &halves,
                n,
                k,
            };
            let got = matmul(&rows, &x, m).expect("kernels run");
            let want = reference(&widened, &x, m, n, k);
            assert_close(&got, &want, 1e-5, &format!("f16 {m}×{k} · {n}×{k}"));
        }
    }
}

/// Causal attention in f64: query `i` of `tq` sees rows `0..rows - tq + 1 + i`.
fn attention_reference(
    q: &[f32],
    keys: &[f32],
    vals: &[f32],
    (heads, kv_heads, hd, cap): (usize, usize, usize, usize),
    tq: usize,
    rows: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; tq * heads * hd];
    for h in 0..heads {
        let g = h / (heads / kv_heads);
        for i in 0..tq {
            let seen = rows - tq + 1 + i;
            let qi = &q[(h * tq + i) * hd..][..hd];
            let scores: Vec<f64> = (0..seen)
                .map(|j| {
                    let kj = &keys[(g * cap + j) * hd..][..hd];
                    qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            for d in 0..hd {
                let v: f64 = (0..seen)
                    .map(|j| exp[j] / sum * vals[(g * cap + j) * hd + d] as f64)
                    .sum();
                out[(i * heads + h) * hd + d] = v as f32;
            }
        }
    }
    out
}

#[test]
fn attention_matches_a_scalar_reference() {
    require_avx2();
    // (heads, kv_heads, head_dim, capacity): grouped queries; a head_dim the tiled path takes
    // (16, 64) and one it leaves to the row-by-row path (24).
    for (heads, kv_heads, hd, cap) in [(4, 2, 16, 70), (3, 3, 64, 60), (4, 1, 24, 50)] {
        let keys = values(kv_heads * cap * hd, hd as u64);
        let vals = values(kv_heads * cap * hd, hd as u64 + 1);
        let (k16, v16): (Vec<f16>, Vec<f16>) = keys
            .iter()
            .zip(&vals)
            .map(|(&k, &v)| (f16::from_f32(k), f16::from_f32(v)))
            .unzip();
        for (tq, rows) in [(1, 1), (1, 37), (3, 20), (16, 16), (17, 50), (49, cap)] {
            // Queries five times the keys' scale: the softmax is far from uniform.
            let q: Vec<f32> = values(heads * tq * hd, tq as u64)
                .iter()
                .map(|v| v * 5.0)
                .collect();
            let shape = (heads, kv_heads, hd, cap);
            check_attention(&q, &keys, &vals, shape, tq, rows);
            check_attention(&q, &k16, &v16, shape, tq, rows);
        }
    }
}

/// The kernel against the f64 reference on the cache's own values (widened from `W`).
fn check_attention<W: CacheValue>(
    q: &[f32],
    keys: &[W],
    vals: &[W],
    (heads, kv_heads, hd, cap): (usize, usize, usize, usize),
    tq: usize,
    rows: usize,
) {
    let widen = |v: &[W]| v.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
    let shape = (heads, kv_heads, hd, cap);
    let want = attention_reference(q, &widen(keys), &widen(vals), shape, tq, rows);
    let cache = CacheRows {
        keys,
        values: vals,
        kv_heads,
        capacity: cap,
        head_dim: hd,
    };
    let got = attend(q, tq, &cache, rows).expect("kernels run");
    let what = format!(
        "{} {shape:?} tq {tq} rows {rows}",
        std::any::type_name::<W>()
    );
    assert_close(&got, &want, 2e-5, &what);
}

#[test]
fn the_gate_and_the_residual_norm_match_scalar_references() {
    require_avx2();
    for (t, inter) in [(1, 8), (3, 37), (20, 64)] {
        // Gates out to ±30, where e^-g over- or underflows a naive f32 silu.
        let gate_up: Vec<f32> = values(t * 2 * inter, inter as u64)
            .iter()
            .map(|v| v * 30.0)
            .collect();
        let got = silu_mul(&gate_up, t, inter).expect("kernels run");
        let want: Vec<f32> = (0..t)
            .flat_map(|r| {
                let row = &gate_up[r * 2 * inter..(r + 1) * 2 * inter];
                (0..inter).map(move |i| {
                    let g = row[i] as f64;
                    (g / (1.0 + (-g).exp()) * row[inter + i] as f64) as f32
                })
            })
            .collect();
        assert_close(&got, &want, 1e-6, &format!("silu·up t {t} inter {inter}"));
    }
    for (rows, width) in [(1, 64), (9, 100)] {
        let x = values(rows * width, 1);
        let y = values(rows * width, 2);
        let w = values(width, 3);
        let got = add_norm(&x, &y, &w, 1e-6).expect("kernels run");
        let mut want = vec![0f32; rows * width];
        for r in 0..rows {
            let yr = &y[r * width..][..width];
            let ms: f64 = yr.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / width as f64;
            let f = 1.0 / (ms + 1e-6).sqrt();
            for i in 0..width {
                want[r * width + i] =
                    (x[r * width + i] as f64 + yr[i] as f64 * f * w[i] as f64) as f32;
            }
        }
        assert_close(&got, &want, 1e-5, &format!("x + norm(y) {rows}×{width}"));
    }
}

#[test]
fn heads_are_normed_rotated_and_laid_out_heads_first() {
    require_avx2();
    let (heads, kv_heads, hd, t) = (4, 2, 8, 10);
    let width = (heads + 2 * kv_heads) * hd;
    let qkv = values(t * width, 11);
    let (q_norm, k_norm) = (values(heads * hd, 12), values(kv_heads * hd, 13));
    let angles: Vec<f32> = (0..t * hd / 2).map(|i| i as f32 * 0.37).collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let shapes = HeadShapes {
        heads,
        kv_heads,
        head_dim: hd,
        q_norm: &q_norm,
        k_norm: &k_norm,
        eps: 1e-6,
        cos: &cos,
        sin: &sin,
        scale: 0.5,
    };
    let got = split_heads(&qkv, t, &shapes).expect("kernels run");
    // One part (q or k) of one token: norm over all its heads, then rotate each head.
    let expect = |part: &[f32], norm: &[f32], tok: usize, scale: f64| -> Vec<f64> {
        let ms = part.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / part.len() as f64;
        let f = 1.0 / (ms + 1e-6).sqrt();
        let normed: Vec<f64> = part
            .iter()
            .zip(norm)
            .map(|(v, w)| *v as f64 * f * *w as f64)
            .collect();
        let mut out = vec![0f64; part.len()];
        for (head, x) in normed.chunks(hd).enumerate() {
            for i in 0..hd / 2 {
                let (c, s) = (cos[tok * hd / 2 + i] as f64, sin[tok * hd / 2 + i] as f64);
                out[head * hd + i] = (x[i] * c - x[i + hd / 2] * s) * scale;
                out[head * hd + i + hd / 2] = (x[i] * s + x[i + hd / 2] * c) * scale;
            }
        }
        out
    };
    for tok in 0..t {
        let row = &qkv[tok * width..][..width];
        let q = expect(&row[..heads * hd], &q_norm, tok, 0.5);
        let k = expect(&row[heads * hd..(heads + kv_heads) * hd], &k_norm, tok, 1.0);
        for h in 0..heads {
            for d in 0..hd {
                let g = got.q[(h * t + tok) * hd + d];
                assert!(
                    (g as f64 - q[h * hd + d]).abs() < 1e-5,
                    "q token {tok} head {h}"
                );
            }
        }
        for h in 0..kv_heads {
            for d in 0..hd {
                let g = got.k[(h * t + tok) * hd + d];
                assert!(
                    (g as f64 - k[h * hd + d]).abs() < 1e-5,
                    "k token {tok} head {h}"
                );
                let v = row[(heads + kv_heads + h) * hd + d];
                assert_eq!(got.v[(h * t + tok) * hd + d], v, "v token {tok} head {h}");
            }
        }
    }
}

#[test]
fn packing_refuses_what_is_not_q8_0_blocks() {
    assert!(PackedQ8::from_blocks(&[0u8; 34], 1, 32).is_some());
    assert!(PackedQ8::from_blocks(&[0u8; 33], 1, 32).is_none());
    assert!(PackedQ8::from_blocks(&[0u8; 34], 1, 40).is_none());
}
