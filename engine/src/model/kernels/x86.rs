//! The AVX2 + FMA + F16C inner loops: all of the kernels' `unsafe` SIMD code, in one place.
//!
//! Every function here is `#[target_feature]` and must only be called once
//! [`super::cpu_has_avx2`] said yes; the safe wrappers in `gemv`, `gemm` and `attention` do.
//! Pointers are raw because the callers hand out disjoint rows of one output to several threads.

use std::arch::x86_64::*;

/// How far ahead of the block being multiplied the Q8_0 kernel asks for the weights (four
/// blocks of a packed group): a core's read rate went from 12.4 to 13.5–15 GB/s with it here,
/// where the hardware prefetcher alone left it short of a plain streaming read.
const PREFETCH_BYTES: usize = 1024;
/// Weights in one Q8_0 block.
pub const Q8_BLOCK: usize = 32;

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Quantizes `x` (a multiple of 32 long) per block of 32: `qs` gets round(x / d) in -127..=127,
/// `abs` its absolute values (the unsigned side of `maddubs`), `d` the block's scale.
///
/// # Safety
/// AVX2/FMA/F16C present; `qs` and `abs` as long as `x`, `d` `x.len() / 32` long.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8(x: &[f32], qs: &mut [i8], abs: &mut [i8], d: &mut [f32]) {
    let sign_bit = _mm256_set1_ps(-0.0);
    // packs interleaves the 128-bit lanes; this puts the 32 values back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (b, block) in x.chunks_exact(Q8_BLOCK).enumerate() {
        let p = block.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let amax = _mm256_max_ps(
            _mm256_max_ps(
                _mm256_andnot_ps(sign_bit, v[0]),
                _mm256_andnot_ps(sign_bit, v[1]),
            ),
            _mm256_max_ps(
                _mm256_andnot_ps(sign_bit, v[2]),
                _mm256_andnot_ps(sign_bit, v[3]),
            ),
        );
        let amax = hmax(amax);
        let scale = amax / 127.0;
        d[b] = scale;
        let inv = _mm256_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
        let i = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv)));
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let q = _mm256_permutevar8x32_epi32(packed, order);
        _mm256_storeu_si256(qs.as_mut_ptr().add(b * Q8_BLOCK) as *mut __m256i, q);
        _mm256_storeu_si256(
            abs.as_mut_ptr().add(b * Q8_BLOCK) as *mut __m256i,
            _mm256_sign_epi8(q, q),
        );
    }
}

/// Activation rows quantized per block of 32 (see [`quantize_row_q8`]).
pub struct Q8Rows<'a> {
    pub qs: &'a [i8],
    pub abs: &'a [i8],
    pub d: &'a [f32],
    /// Blocks a row.
    pub blocks: usize,
}

/// One group of 8 packed Q8_0 weight rows (`qs`: per block, eight 32-byte slices holding 4
/// weights of each row; `scales`: per block, the 8 rows' f16 scales) times `T` quantized
/// activation rows from row `t0`: `y[t][r]` for the group's rows. Each 32-bit lane is one
/// weight row, so a block's products stay in their row's lane: `maddubs` of |x| and sign(x)·w
/// (at most 2·127·127 a pair: no saturation), pairs summed to i32 across the block, then scaled
/// by both blocks' scales in f32.
///
/// # Safety
/// AVX2/FMA/F16C present; `qs` holds `x.blocks · 256` bytes, `scales` `x.blocks · 8` values;
/// `y` has at least `T` rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q8_group<const T: usize>(
    qs: *const i8,
    scales: *const half::f16,
    x: &Q8Rows,
    t0: usize,
    y: &mut [[f32; 8]],
) {
    let ones = _mm256_set1_epi16(1);
    let nb = x.blocks;
    let xq = x.qs.as_ptr().add(t0 * nb * Q8_BLOCK) as *const i32;
    let xa = x.abs.as_ptr().add(t0 * nb * Q8_BLOCK) as *const i32;
    let xd = x.d.as_ptr().add(t0 * nb);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let mut dots = [_mm256_setzero_si256(); T];
        // A hint only: past the end of the weights it reads nothing (hence wrapping_add).
        let ahead = qs.wrapping_add(b * 256 + PREFETCH_BYTES);
        for line in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
        }
        for j in 0..8 {
            let wv = _mm256_loadu_si256(qs.add((b * 8 + j) * 32) as *const __m256i);
            for (t, dot) in dots.iter_mut().enumerate() {
                let at = (t * nb + b) * 8 + j;
                let xv = _mm256_set1_epi32(std::ptr::read_unaligned(xq.add(at)));
                let av = _mm256_set1_epi32(std::ptr::read_unaligned(xa.add(at)));
                let pairs = _mm256_maddubs_epi16(av, _mm256_sign_epi8(wv, xv));
                *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(pairs, ones));
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(b * 8) as *const __m128i));
        for (t, acc) in acc.iter_mut().enumerate() {
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*xd.add(t * nb + b)));
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[t]), scale, *acc);
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(y[t].as_mut_ptr(), *acc);
    }
}

/// What [`dense_tile`] reads its weights as.
pub trait DenseWeight: Copy {
    /// Eight weights from `p` as f32.
    ///
    /// # Safety
    /// AVX2/F16C present; eight values readable at `p`.
    unsafe fn load8(p: *const Self) -> __m256;
    fn to_f32(self) -> f32;
}

impl DenseWeight for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_loadu_ps(p)
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl DenseWeight for half::f16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

/// `R` consecutive dense weight rows (`k` wide, starting at `w`) times `T` f32 activation rows
/// (`x`, `k` wide, from row `t0`): `y[t * n + r]` for the tile, with FMA.
///
/// # Safety
/// AVX2/FMA/F16C present; `R` rows of `k` weights at `w`; `x` holds rows `t0..t0 + T`; `y` has
/// room at `(t0 + t) * n + r`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dense_tile<W: DenseWeight, const R: usize, const T: usize>(
    w: *const W,
    k: usize,
    x: &[f32],
    t0: usize,
    y: *mut f32,
    n: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let body = k - k % 8;
    let xp = x.as_ptr().add(t0 * k);
    let mut i = 0;
    while i < body {
        for (r, acc) in acc.iter_mut().enumerate() {
            let wv = W::load8(w.add(r * k + i));
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(t * k + i)), *acc);
            }
        }
        i += 8;
    }
    for (r, acc) in acc.iter().enumerate() {
        for (t, acc) in acc.iter().enumerate() {
            let mut sum = hsum(*acc);
            for j in body..k {
                sum += (*w.add(r * k + j)).to_f32() * *xp.add(t * k + j);
            }
            *y.add((t0 + t) * n + r) = sum;
        }
    }
}

/// One dense weight row (`x.len()` wide, at `w`) times the activation row `x`: four
/// accumulators 32 weights apart, so the row streams in one pass.
///
/// # Safety
/// AVX2/FMA/F16C present; `x.len()` weights readable at `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dense_row<W: DenseWeight>(w: *const W, x: &[f32]) -> f32 {
    let k = x.len();
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let body = k - k % 32;
    let mut i = 0;
    while i < body {
        let ahead = (w.wrapping_add(i) as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        for (j, acc) in acc.iter_mut().enumerate() {
            let at = i + 8 * j;
            *acc = _mm256_fmadd_ps(W::load8(w.add(at)), _mm256_loadu_ps(xp.add(at)), *acc);
        }
        i += 32;
    }
    while i + 8 <= k {
        acc[0] = _mm256_fmadd_ps(W::load8(w.add(i)), _mm256_loadu_ps(xp.add(i)), acc[0]);
        i += 8;
    }
    let mut sum = hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    for (j, xj) in x.iter().enumerate().skip(i) {
        sum += (*w.add(j)).to_f32() * xj;
    }
    sum
}

/// Dot products of the query `q` (`hd` wide) with `rows` key rows (`hd` apart, from `k`).
///
/// # Safety
/// AVX2/FMA/F16C present; `hd` a multiple of 8; `rows · hd` keys readable at `k`; `scores`
/// `rows` long.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn key_scores<W: DenseWeight>(q: &[f32], k: *const W, rows: usize, scores: &mut [f32]) {
    let hd = q.len();
    for (j, score) in scores.iter_mut().enumerate().take(rows) {
        let row = k.add(j * hd);
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= hd {
            a0 = _mm256_fmadd_ps(W::load8(row.add(i)), _mm256_loadu_ps(q.as_ptr().add(i)), a0);
            a1 = _mm256_fmadd_ps(
                W::load8(row.add(i + 8)),
                _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                a1,
            );
            i += 16;
        }
        if i < hd {
            a0 = _mm256_fmadd_ps(W::load8(row.add(i)), _mm256_loadu_ps(q.as_ptr().add(i)), a0);
        }
        *score = hsum(_mm256_add_ps(a0, a1));
    }
}

/// `out = Σ_j p[j] · v_j` over `p.len()` value rows (`out.len()` wide, from `v`), 64 columns at
/// a time in registers.
///
/// # Safety
/// AVX2/FMA/F16C present; `out.len()` a multiple of 8; the rows readable at `v`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn weighted_values<W: DenseWeight>(p: &[f32], v: *const W, out: &mut [f32]) {
    let hd = out.len();
    let mut col = 0;
    while col + 64 <= hd {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &pj) in p.iter().enumerate() {
            let pv = _mm256_set1_ps(pj);
            let row = v.add(j * hd + col);
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(pv, W::load8(row.add(8 * l)), *acc);
            }
        }
        for (l, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(col + 8 * l), *acc);
        }
        col += 64;
    }
    while col < hd {
        let mut acc = _mm256_setzero_ps();
        for (j, &pj) in p.iter().enumerate() {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(pj), W::load8(v.add(j * hd + col)), acc);
        }
        _mm256_storeu_ps(out.as_mut_ptr().add(col), acc);
        col += 8;
    }
}

/// e^x for eight values (x ≤ 88; below -87 it gives e^-87): 2^n · p(r) with x = n ln 2 + r,
/// |r| ≤ ln 2 / 2, p the degree-6 Taylor polynomial (relative error about 1e-7).
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    // ln 2 in two parts, so n · ln 2 is exact in the first.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let two_n = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    );
    _mm256_mul_ps(p, _mm256_castsi256_ps(two_n))
}

/// Softmax in place.
///
/// # Safety
/// AVX2/FMA present.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn softmax(s: &mut [f32]) {
    let body = s.len() - s.len() % 8;
    let p = s.as_mut_ptr();
    let mut m8 = _mm256_set1_ps(f32::NEG_INFINITY);
    for i in (0..body).step_by(8) {
        m8 = _mm256_max_ps(m8, _mm256_loadu_ps(p.add(i)));
    }
    let max = s[body..].iter().copied().fold(hmax(m8), f32::max);
    let max8 = _mm256_set1_ps(max);
    let mut sum8 = _mm256_setzero_ps();
    for i in (0..body).step_by(8) {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), max8));
        _mm256_storeu_ps(p.add(i), e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    let mut sum = hsum(sum8);
    for v in &mut s[body..] {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = _mm256_set1_ps(1.0 / sum);
    for i in (0..body).step_by(8) {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
    }
    for v in &mut s[body..] {
        *v /= sum;
    }
}

/// `C[rows × cols] += A · B` for one 6-row panel `a` (`[kc][6]`) and 16 columns of `b` (depth
/// step `p` at `b + p · ldb`), C at `c` with row stride `ldc`: twelve accumulators, each depth
/// step two loads, six broadcasts and twelve FMAs.
///
/// # Safety
/// AVX2/FMA present; `a` holds `kc` steps, and 16 values are readable at `b + p · ldb` for each
/// `p < kc`; C's `rows ≤ 6` rows of `cols ≤ 16` are writable.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let mut c00 = _mm256_setzero_ps();
    let mut c01 = _mm256_setzero_ps();
    let mut c10 = _mm256_setzero_ps();
    let mut c11 = _mm256_setzero_ps();
    let mut c20 = _mm256_setzero_ps();
    let mut c21 = _mm256_setzero_ps();
    let mut c30 = _mm256_setzero_ps();
    let mut c31 = _mm256_setzero_ps();
    let mut c40 = _mm256_setzero_ps();
    let mut c41 = _mm256_setzero_ps();
    let mut c50 = _mm256_setzero_ps();
    let mut c51 = _mm256_setzero_ps();
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(ldb * p));
        let b1 = _mm256_loadu_ps(b.add(ldb * p + 8));
        let ap = a.add(6 * p);
        let x = _mm256_broadcast_ss(&*ap);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        let x = _mm256_broadcast_ss(&*ap.add(1));
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        let x = _mm256_broadcast_ss(&*ap.add(2));
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        let x = _mm256_broadcast_ss(&*ap.add(3));
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        let x = _mm256_broadcast_ss(&*ap.add(4));
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        let x = _mm256_broadcast_ss(&*ap.add(5));
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    let tile = [
        [c00, c01],
        [c10, c11],
        [c20, c21],
        [c30, c31],
        [c40, c41],
        [c50, c51],
    ];
    if cols == 16 {
        for (r, [lo, hi]) in tile.iter().enumerate().take(rows) {
            let row = c.add(r * ldc);
            _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), *lo));
            _mm256_storeu_ps(row.add(8), _mm256_add_ps(_mm256_loadu_ps(row.add(8)), *hi));
        }
    } else {
        let mut buf = [0f32; 16];
        for (r, [lo, hi]) in tile.iter().enumerate().take(rows) {
            _mm256_storeu_ps(buf.as_mut_ptr(), *lo);
            _mm256_storeu_ps(buf.as_mut_ptr().add(8), *hi);
            let row = c.add(r * ldc);
            for (j, v) in buf.iter().enumerate().take(cols) {
                *row.add(j) += v;
            }
        }
    }
}

/// Eight dense weight rows (`k` apart, from `w`; rows from `rows` on read as zeros), depths
/// `0..kc`, widened into 8 columns of a weight panel: depth `p` of row `r` goes to
/// `out[p · stride + r]`. Eight depths at a time: eight loads and an 8 × 8 transpose.
///
/// # Safety
/// AVX2/F16C present; rows `0..rows` (≤ 8) hold `kc` weights at `w + r · k`; `out` writable at
/// `(kc - 1) · stride + 8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_dense_rows<W: DenseWeight>(
    w: *const W,
    k: usize,
    rows: usize,
    kc: usize,
    out: *mut f32,
    stride: usize,
) {
    let body = kc - kc % 8;
    for p in (0..body).step_by(8) {
        let mut v = [_mm256_setzero_ps(); 8];
        for (r, v) in v.iter_mut().enumerate().take(rows) {
            *v = W::load8(w.add(r * k + p));
        }
        for (j, col) in transpose8(v).iter().enumerate() {
            _mm256_storeu_ps(out.add((p + j) * stride), *col);
        }
    }
    for p in body..kc {
        for r in 0..8 {
            *out.add(p * stride + r) = if r < rows {
                (*w.add(r * k + p)).to_f32()
            } else {
                0.0
            };
        }
    }
}

/// The 8 × 8 transpose of eight vectors (row `i` of the result: element `i` of each input).
#[inline(always)]
unsafe fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(v[0], v[1]);
    let t1 = _mm256_unpackhi_ps(v[0], v[1]);
    let t2 = _mm256_unpacklo_ps(v[2], v[3]);
    let t3 = _mm256_unpackhi_ps(v[2], v[3]);
    let t4 = _mm256_unpacklo_ps(v[4], v[5]);
    let t5 = _mm256_unpackhi_ps(v[4], v[5]);
    let t6 = _mm256_unpacklo_ps(v[6], v[7]);
    let t7 = _mm256_unpackhi_ps(v[6], v[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Widens `blocks` Q8_0 blocks of one packed group of 8 rows (see [`q8_group`]) into 8 columns
/// of a weight panel: depth `p` of row `r` goes to `out[p · stride + r]`. Byte `e` of each
/// row's 32-bit lane is weight `4j + e`: shifting it to the top and back sign-extends it in
/// place, so each step is eight rows at once.
///
/// # Safety
/// AVX2/F16C present; `blocks · 256` bytes at `qs` and `blocks · 8` scales at `scales`; `out`
/// writable at `(32 · blocks - 1) · stride + 8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_q8_panel(
    qs: *const i8,
    scales: *const half::f16,
    blocks: usize,
    out: *mut f32,
    stride: usize,
) {
    for b in 0..blocks {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(b * 8) as *const __m128i));
        for j in 0..8 {
            let v = _mm256_loadu_si256(qs.add((b * 8 + j) * 32) as *const __m256i);
            let p = b * Q8_BLOCK + 4 * j;
            let w = [
                _mm256_srai_epi32(_mm256_slli_epi32(v, 24), 24),
                _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 24),
                _mm256_srai_epi32(_mm256_slli_epi32(v, 8), 24),
                _mm256_srai_epi32(v, 24),
            ];
            for (e, w) in w.iter().enumerate() {
                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(*w), dw);
                _mm256_storeu_ps(out.add((p + e) * stride), f);
            }
        }
    }
}

/// `out = silu(g) · u = g / (1 + e^-g) · u`, elementwise.
///
/// # Safety
/// AVX2/FMA present; the three slices have one length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    let body = g.len() - g.len() % 8;
    let one = _mm256_set1_ps(1.0);
    for i in (0..body).step_by(8) {
        let gv = _mm256_loadu_ps(g.as_ptr().add(i));
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        let silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        let y = _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr().add(i)));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
    }
    for i in body..g.len() {
        out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
    }
}
