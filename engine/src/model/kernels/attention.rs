//! Attention over the KV cache for the queries of one pass: each query head's scores against its
//! key head's rows up to the query's own position (causal: key blocks wholly after a query block
//! are never read, where a masked matrix product computes them all), softmax, and the weighted
//! sum of the value rows. The (query head, block of queries) pairs are shared out over the
//! threads; candle runs a decode step's two matrix-vector products per head on one thread.
//!
//! A few queries (a decode step) go one at a time, as dot products along each cached row. Many
//! (a prefill) go through the 6 × 16 FMA kernel of the matrix products (`gemm`): the keys are
//! transposed once a pass, and each block of queries multiplies them, then the values.

use std::cell::RefCell;

use super::pool::{for_each_range, SharedOut};
use super::x86::{kernel_6x16, key_scores, softmax, weighted_values};
use super::{CacheRows, CacheValue};

/// Queries of one head a unit of work takes, one at a time.
const QUERY_BLOCK: usize = 16;
/// Queries from which a pass goes through the matrix kernel, and how many a unit takes.
const TILED_FROM: usize = 16;
const TILED_BLOCK: usize = 48;
/// The kernel's rows (queries) and columns (keys, or value columns).
const MR: usize = 6;
const NR: usize = 16;

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `q` is `[heads, tq, head_dim]`, already scaled: the last `tq` of the first `rows` positions,
/// so query `i` attends to rows `0..rows - tq + 1 + i`. Returns `[tq, heads, head_dim]`.
pub(super) fn attend<W: CacheValue>(
    q: &[f32],
    tq: usize,
    cache: &CacheRows<W>,
    rows: usize,
) -> Vec<f32> {
    assert!(
        super::cpu_has_avx2(),
        "the AVX2 kernels on a CPU without AVX2"
    );
    let hd = cache.head_dim;
    let heads = q.len() / (hd * tq);
    let per_key_head = heads / cache.kv_heads;
    assert!(hd.is_multiple_of(8) && tq >= 1 && tq <= rows && rows <= cache.capacity);
    assert!(heads * tq * hd == q.len() && heads.is_multiple_of(cache.kv_heads));
    assert!(cache.keys.len() >= cache.kv_heads * cache.capacity * hd);
    assert!(cache.values.len() >= cache.kv_heads * cache.capacity * hd);
    if tq >= TILED_FROM && hd.is_multiple_of(NR) {
        return attend_tiled(q, tq, cache, rows);
    }
    let mut out = vec![0f32; tq * heads * hd];
    let shared = SharedOut(out.as_mut_ptr());
    let blocks = tq.div_ceil(QUERY_BLOCK);
    for_each_range(heads * blocks, |units| {
        SCORES.with_borrow_mut(|scores| {
            for unit in units {
                let (h, block) = (unit / blocks, unit % blocks);
                let base = (h / per_key_head) * cache.capacity * hd;
                for i in block * QUERY_BLOCK..tq.min((block + 1) * QUERY_BLOCK) {
                    let seen = rows - tq + 1 + i;
                    scores.resize(seen, 0.0);
                    let q = &q[(h * tq + i) * hd..(h * tq + i + 1) * hd];
                    // SAFETY: AVX2 checked above; the key head's rows 0..seen lie in the cache
                    // (asserted above); this (query, head) output row is written by this unit
                    // only.
                    unsafe {
                        key_scores(q, cache.keys.as_ptr().add(base), seen, scores);
                        softmax(scores);
                        let out = std::slice::from_raw_parts_mut(
                            shared.ptr().add((i * heads + h) * hd),
                            hd,
                        );
                        weighted_values(scores, cache.values.as_ptr().add(base), out);
                    }
                }
            }
        });
    });
    out
}

/// [`attend`] for many queries (`head_dim` a multiple of 16), through the matrix kernel.
fn attend_tiled<W: CacheValue>(
    q: &[f32],
    tq: usize,
    cache: &CacheRows<W>,
    rows: usize,
) -> Vec<f32> {
    let hd = cache.head_dim;
    let heads = q.len() / (hd * tq);
    let per_key_head = heads / cache.kv_heads;
    let width = rows.div_ceil(NR) * NR;
    let (keys_t, values) = widen_cache(cache, rows, width);
    let mut out = vec![0f32; tq * heads * hd];
    let shared = SharedOut(out.as_mut_ptr());
    let blocks = tq.div_ceil(TILED_BLOCK);
    for_each_range(heads * blocks, |units| {
        SCORES.with_borrow_mut(|scores| {
            PANEL.with_borrow_mut(|panel| {
                for unit in units {
                    let (h, block) = (unit / blocks, unit % blocks);
                    let g = h / per_key_head;
                    let first = block * TILED_BLOCK;
                    let queries = TILED_BLOCK.min(tq - first);
                    // Keys the block's last query sees, rounded up to whole kernel columns.
                    let seen = rows - tq + first + queries;
                    let seen_wide = seen.div_ceil(NR) * NR;
                    scores.clear();
                    scores.resize(queries * seen_wide, 0.0);
                    for p0 in (0..queries).step_by(MR) {
                        let pr = MR.min(queries - p0);
                        pack_rows(&q[(h * tq + first + p0) * hd..], hd, pr, hd, panel);
                        for j in (0..seen_wide).step_by(NR) {
                            // SAFETY: AVX2 checked by `attend`; the panel holds hd steps, the
                            // transposed keys 16 columns from j at every step (width ≥
                            // seen_wide), the scores rows p0..p0 + pr of seen_wide.
                            unsafe {
                                kernel_6x16(
                                    hd,
                                    panel.as_ptr(),
                                    keys_t[g * hd * width + j..].as_ptr(),
                                    width,
                                    scores[p0 * seen_wide + j..].as_mut_ptr(),
                                    seen_wide,
                                    pr,
                                    NR,
                                )
                            };
                        }
                    }
                    for (i, row) in scores.chunks_exact_mut(seen_wide).enumerate() {
                        let own = rows - tq + first + i + 1;
                        // SAFETY: AVX2 checked by `attend`.
                        unsafe { softmax(&mut row[..own]) };
                        row[own..].fill(0.0);
                    }
                    for p0 in (0..queries).step_by(MR) {
                        let pr = MR.min(queries - p0);
                        pack_rows(&scores[p0 * seen_wide..], seen_wide, pr, seen, panel);
                        for c in (0..hd).step_by(NR) {
                            // SAFETY: as above; the value rows 0..seen of key head g have hd
                            // columns, c + 16 ≤ hd; the output rows (query first + p0 + r, head
                            // h) are this unit's alone.
                            unsafe {
                                kernel_6x16(
                                    seen,
                                    panel.as_ptr(),
                                    values[g * width * hd + c..].as_ptr(),
                                    hd,
                                    shared.ptr().add(((first + p0) * heads + h) * hd + c),
                                    heads * hd,
                                    pr,
                                    NR,
                                )
                            };
                        }
                    }
                }
            });
        });
    });
    out
}

/// `pr` rows (`stride` apart, `depth` used) as a kernel panel `[depth][6]`, zero rows after `pr`.
fn pack_rows(src: &[f32], stride: usize, pr: usize, depth: usize, panel: &mut Vec<f32>) {
    panel.clear();
    panel.resize(depth * MR, 0.0);
    for r in 0..pr {
        for (p, &v) in src[r * stride..r * stride + depth].iter().enumerate() {
            panel[p * MR + r] = v;
        }
    }
}

/// The first `rows` cache rows of each key head in f32: keys transposed (`[kv_heads][hd][width]`,
/// zero columns after `rows`), values as they are (`[kv_heads][width][hd]`).
fn widen_cache<W: CacheValue>(
    cache: &CacheRows<W>,
    rows: usize,
    width: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (hd, cap) = (cache.head_dim, cache.capacity);
    let mut keys_t = vec![0f32; cache.kv_heads * hd * width];
    let mut values = vec![0f32; cache.kv_heads * width * hd];
    let (kt, vs) = (
        SharedOut(keys_t.as_mut_ptr()),
        SharedOut(values.as_mut_ptr()),
    );
    for_each_range(cache.kv_heads, |heads| {
        let mut row = vec![0f32; hd];
        for g in heads {
            for j in 0..rows {
                let at = (g * cap + j) * hd;
                for (d, v) in row.iter_mut().enumerate() {
                    *v = cache.keys[at + d].to_f32();
                }
                // SAFETY: key head g's columns and rows are written by this range only.
                unsafe {
                    for (d, &v) in row.iter().enumerate() {
                        *kt.ptr().add((g * hd + d) * width + j) = v;
                    }
                    for (d, v) in cache.values[at..at + hd].iter().enumerate() {
                        *vs.ptr().add((g * width + j) * hd + d) = v.to_f32();
                    }
                }
            }
        }
    });
    (keys_t, values)
}
