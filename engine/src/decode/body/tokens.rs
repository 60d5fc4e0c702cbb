//! The body's text and its tokens, each with its byte end, kept in agreement; a changed text
//! keeps the longest token prefix that still holds (docs/ENGINE.md "Human events: the prefix
//! cut", steps 3–4).

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use tokenizers::Tokenizer;

use super::Edit;
use crate::decode::flush::Cut;
use crate::decode::vocab::TokenTable;

/// The body text (every word preceded by one space) and its tokens.
pub struct Tokens {
    tokenizer: Arc<Tokenizer>,
    table: Arc<TokenTable>,
    ids: Vec<u32>,
    /// Byte end of each token in `text`.
    ends: Vec<usize>,
    text: Vec<u8>,
}

impl Tokens {
    pub fn new(tokenizer: Arc<Tokenizer>, table: Arc<TokenTable>) -> Self {
        Self {
            tokenizer,
            table,
            ids: Vec::new(),
            ends: Vec::new(),
            text: Vec::new(),
        }
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn ends(&self) -> &[usize] {
        &self.ends
    }

    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The text of token `id` (empty if it has none).
    pub fn bytes_of(&self, id: u32) -> &[u8] {
        self.table.bytes(id)
    }

    /// Append a token whose text the caller has checked continues the body.
    pub fn push(&mut self, id: u32) {
        self.text.extend_from_slice(self.table.bytes(id));
        self.ids.push(id);
        self.ends.push(self.text.len());
    }

    /// Tokenize body text (which starts at a word start) and check its bytes round-trip.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        let ids = enc.get_ids().to_vec();
        ensure!(
            self.table.text_of(&ids) == text.as_bytes(),
            "the tokenizer does not round-trip {text:?}: is it a ByteLevel tokenizer that splits at spaces?"
        );
        Ok(ids)
    }

    /// Replace the text, keeping the longest token prefix that still holds: the tokens before
    /// the word where the texts first differ (a word's tokens never depend on what follows it:
    /// the pre-tokenizer splits at spaces), and the new tokens that happen to equal old ones.
    pub fn replace(&mut self, new_text: Vec<u8>) -> Result<Edit> {
        let d = self
            .text
            .iter()
            .zip(&new_text)
            .take_while(|(a, b)| a == b)
            .count();
        // The last word start at or before `d` that is also a token boundary of the old body.
        let mut b = word_start_at_or_before(&new_text, d);
        let k = loop {
            let k = self.ends.partition_point(|&e| e <= b);
            let end_k = if k == 0 { 0 } else { self.ends[k - 1] };
            if end_k == b {
                break k;
            }
            b = word_start_at_or_before(&new_text, end_k);
        };
        let suffix = std::str::from_utf8(&new_text[b..]).context("body text is not UTF-8")?;
        let enc = self.encode(suffix)?;
        let old_len = self.ids.len();
        let mut p = k;
        while p < old_len && p - k < enc.len() && self.ids[p] == enc[p - k] {
            p += 1;
        }
        let mut ids = self.ids[..k].to_vec();
        ids.extend_from_slice(&enc);
        let mut ends = self.ends[..k].to_vec();
        let mut at = b;
        for &id in &enc {
            at += self.table.bytes(id).len();
            ends.push(at);
        }
        let edit = Edit {
            kept: p,
            cut: p < old_len,
            refed: ids.len() - p,
        };
        self.ids = ids;
        self.ends = ends;
        self.text = new_text;
        Ok(edit)
    }

    /// Drop the tokens and text before `cut`.
    pub fn drain_to(&mut self, cut: Cut) {
        self.ids.drain(..cut.token);
        self.ends.drain(..cut.token);
        for e in &mut self.ends {
            *e -= cut.byte;
        }
        self.text.drain(..cut.byte);
    }
}

/// The last word start (a space, or 0) at or before `d`.
fn word_start_at_or_before(text: &[u8], d: usize) -> usize {
    let d = d.min(text.len());
    if d < text.len() && text[d] == b' ' {
        return d;
    }
    text[..d].iter().rposition(|b| *b == b' ').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_starts() {
        let t = b" 0+060e P_12 P_2";
        assert_eq!(word_start_at_or_before(t, 0), 0);
        assert_eq!(word_start_at_or_before(t, 7), 7);
        assert_eq!(word_start_at_or_before(t, 10), 7);
        assert_eq!(word_start_at_or_before(t, 16), 12);
        assert_eq!(word_start_at_or_before(t, 99), 12);
    }
}
