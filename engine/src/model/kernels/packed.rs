//! Q8_0 weights packed for the AVX2 kernels: the same numbers and bytes as candle's Q8_0 blocks,
//! rearranged so that one 32-byte load holds 4 weights of each of 8 rows.
//!
//! Rows go in groups of 8 (the last group padded with zero rows). For each group and each
//! 32-weight block, `qs` holds eight 32-byte slices: slice `j` is weights `4j..4j + 4` of the
//! block, for rows 0..8 in turn; `scales` holds the block's 8 f16 scales. The kernel keeps one
//! row in each 32-bit lane from the first product to the last, so no horizontal sums are needed
//! (the layout ggml's repacked x86 kernels use for Q4_0).

use half::f16;

use super::WeightRows;

/// Rows in a packed group.
pub(super) const GROUP_ROWS: usize = 8;
/// Bytes of one of candle's Q8_0 blocks: an f16 scale, then 32 int8.
const BLOCK_BYTES: usize = 34;

/// An `[n, k]` Q8_0 matrix, packed.
pub struct PackedQ8 {
    qs: Vec<i8>,
    scales: Vec<f16>,
    n: usize,
    k: usize,
}

impl PackedQ8 {
    /// Packs candle's Q8_0 blocks of an `[n, k]` matrix (`QTensor::data`); `None` if the bytes are
    /// not that.
    pub fn from_blocks(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        let blocks = k / 32;
        if !k.is_multiple_of(32) || bytes.len() != n * blocks * BLOCK_BYTES {
            return None;
        }
        let groups = n.div_ceil(GROUP_ROWS);
        let mut qs = vec![0i8; groups * blocks * GROUP_ROWS * 32];
        let mut scales = vec![f16::ZERO; groups * blocks * GROUP_ROWS];
        for (row, row_bytes) in bytes.chunks_exact(blocks * BLOCK_BYTES).enumerate() {
            let (group, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
            for (b, block) in row_bytes.chunks_exact(BLOCK_BYTES).enumerate() {
                let at = group * blocks + b;
                scales[at * GROUP_ROWS + lane] = f16::from_le_bytes([block[0], block[1]]);
                for (j, four) in block[2..].chunks_exact(4).enumerate() {
                    let slice = (at * GROUP_ROWS + j) * 32 + lane * 4;
                    for (dst, &src) in qs[slice..slice + 4].iter_mut().zip(four) {
                        *dst = src as i8;
                    }
                }
            }
        }
        Some(Self { qs, scales, n, k })
    }

    /// Bytes held (what a decode step reads).
    pub fn storage_bytes(&self) -> usize {
        self.qs.len() + 2 * self.scales.len()
    }

    pub(in crate::model) fn rows(&self) -> WeightRows<'_> {
        WeightRows::Q8 {
            qs: &self.qs,
            scales: &self.scales,
            n: self.n,
            k: self.k,
        }
    }
}
