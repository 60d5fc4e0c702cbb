//! The KV-cache policy: bringing the live cache up to date after every change, and the periodic
//! flush — where it cuts, how its cache is built beside the live one (in idle time, paced with the
//! appended tokens only when idle time has not kept up) and when the two swap (docs/ENGINE.md
//! "The context and the KV cache", "Periodic flush").

use anyhow::{bail, ensure, Context as _, Result};

use crate::model::KvCache;

use crate::events::item::time_word_value;

use super::body::{Body, Edit};
use super::Context;

/// Sizes of the context and of its flushes, in tokens (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextConfig {
    /// The most tokens the KV cache holds (the context limit).
    pub limit: usize,
    /// Start building the flushed cache once the context holds this many tokens.
    pub flush_start: usize,
    /// Tokens (header + newest body) a flush keeps; at most half the limit.
    pub keep: usize,
    /// Most flush prefill tokens done with each appended token when idle time has not kept up
    /// (the flush is otherwise built in idle time; see [`Context::flush_work`]).
    pub step_chunk: usize,
}

impl ContextConfig {
    /// The defaults for a limit: flush from 3/4 of it, keep half, at most 8 prefill tokens a step.
    pub fn for_limit(limit: usize) -> Self {
        Self {
            limit,
            flush_start: limit * 3 / 4,
            keep: limit / 2,
            step_chunk: 8,
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.limit >= 32,
            "the context must hold at least 32 tokens, got {}",
            self.limit
        );
        ensure!(
            self.keep >= 8 && self.keep <= self.limit / 2,
            "a flush keeps between 8 tokens and half the context ({}), got {}",
            self.limit / 2,
            self.keep
        );
        ensure!(
            self.flush_start > self.keep && self.flush_start <= self.limit,
            "the flush must start between the kept size ({}) and the limit ({}), got {}",
            self.keep,
            self.limit,
            self.flush_start
        );
        ensure!(
            self.step_chunk >= 1,
            "the flush step chunk must be at least one token"
        );
        Ok(())
    }
}

/// A place the body can be cut at: a word start that is a token boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// First kept body token.
    pub token: usize,
    /// Its byte offset in the body text.
    pub byte: usize,
    /// The absolute tick there (the new body's tick 0).
    pub tick: u64,
}

/// A flushed cache being built: `header ++ body[cut.token..]`.
struct PendingFlush {
    cut: Cut,
    cache: KvCache,
}

/// The flush's settings and state.
pub(super) struct Flush {
    cfg: ContextConfig,
    pending: Option<PendingFlush>,
    /// The earliest tick a flush may cut at (the decoder's "now").
    floor_tick: u64,
}

impl Flush {
    pub(super) fn new(cfg: ContextConfig) -> Self {
        Self {
            cfg,
            pending: None,
            floor_tick: 0,
        }
    }

    pub(super) fn config(&self) -> &ContextConfig {
        &self.cfg
    }

    pub(super) fn pending(&self) -> bool {
        self.pending.is_some()
    }

    pub(super) fn set_floor(&mut self, tick: u64) {
        self.floor_tick = self.floor_tick.max(tick);
    }
}

impl Context {
    /// After the body changed at token `edit.kept`: keep the cache rows before it (in the live
    /// cache and in a pending flush's, or abandon the flush if the change goes before its cut)
    /// and bring the cache up to date.
    pub(super) fn apply_edit(&mut self, edit: Edit) -> Result<()> {
        let h = self.body.header().len();
        self.caches.truncate(h + edit.kept);
        match &mut self.flush.pending {
            Some(f) if edit.kept >= f.cut.token => f.cache.truncate(h + (edit.kept - f.cut.token)),
            Some(_) => self.cancel_flush(),
            None => {}
        }
        self.sync()
    }

    /// Bring the live cache up to date and compute the next logits; advance a pending flush.
    pub(super) fn sync(&mut self) -> Result<()> {
        let cfg = self.flush.cfg;
        let total = self.body.len();
        if let Some(remaining) = self.flush_remaining() {
            if remaining <= cfg.step_chunk {
                return self.finish_flush(false);
            }
        }
        if total > cfg.limit {
            // At the limit: finish the flush now (a stall). A pending flush whose kept part has
            // grown past what leaves room (human input came in meanwhile) is chosen again.
            if let Some(f) = &self.flush.pending {
                let new_len = total - f.cut.token;
                if new_len > (cfg.keep + cfg.limit) / 2 {
                    self.cancel_flush();
                }
            }
            if self.flush.pending.is_none() {
                self.start_flush(true)?;
            }
            return self.finish_flush(true);
        }
        let q = self.caches.len().min(total - 1);
        self.caches.truncate(q);
        let ids = self.body.ids(q, total);
        self.logits = self.caches.forward(&ids, &mut self.stats.forward_seconds)?;
        if let Some(remaining) = self.flush_remaining() {
            // The flush is built in idle time, in large chunks (a prefill of a few tokens costs
            // nearly as much as one of many). Only when idle time has not kept up is it paced
            // here, so it still catches up before the limit: what remains is kept within
            // (step_chunk − 1) tokens per token of headroom, so each appended token then costs
            // at most `step_chunk` prefill tokens, and a burst of human tokens its share at once.
            let headroom = cfg.limit - total;
            let allowed = (cfg.step_chunk.max(2) - 1) * headroom;
            let chunk = remaining.saturating_sub(allowed);
            if chunk > 0 {
                self.flush_work(chunk)?;
            }
        } else if total >= cfg.flush_start {
            self.start_flush(false)?;
        }
        Ok(())
    }

    /// Drop a pending flush (its cache goes back to spare).
    fn cancel_flush(&mut self) {
        if let Some(f) = self.flush.pending.take() {
            self.caches.give_spare(f.cache);
            self.stats.flushes_cancelled += 1;
        }
    }

    /// Tokens a pending flush still has to prefill (of `header ++ body[cut.token..]`).
    fn flush_remaining(&self) -> Option<usize> {
        let f = self.flush.pending.as_ref()?;
        let new_len = self.body.len() - f.cut.token;
        Some(new_len - f.cache.len())
    }

    /// Prefill up to `max_tokens` of a pending flush (starting one if the context is past
    /// `flush_start`); swap when it has caught up. Returns whether any work was done.
    pub fn flush_work(&mut self, max_tokens: usize) -> Result<bool> {
        if self.flush.pending.is_none()
            && (self.body.len() < self.flush.cfg.flush_start || !self.start_flush(false)?)
        {
            return Ok(false);
        }
        let Some(remaining) = self.flush_remaining() else {
            return Ok(false);
        };
        if remaining <= max_tokens {
            self.finish_flush(false)?;
            return Ok(true);
        }
        self.flush_forward(max_tokens)?;
        Ok(true)
    }

    /// Feed the next `n` tokens the flush cache needs; their last logits.
    fn flush_forward(&mut self, n: usize) -> Result<Vec<f32>> {
        let f = self.flush.pending.as_mut().context("internal: no flush")?;
        let h = self.body.header().len();
        let filled = f.cache.len();
        // The flush cache's token i is header[i] for i < h, then body[cut.token + i - h].
        let from = if filled < h {
            filled
        } else {
            h + f.cut.token + (filled - h)
        };
        let end_header = if filled < h { h } else { usize::MAX };
        let to = (from + n).min(self.body.len()).min(end_header);
        let ids = self.body.ids(from, to);
        let logits =
            self.caches
                .forward_into(&mut f.cache, &ids, &mut self.stats.forward_seconds)?;
        self.stats.flush_tokens += (to - from) as u64;
        Ok(logits)
    }

    /// Feed the rest of the pending flush and swap the caches.
    fn finish_flush(&mut self, stall: bool) -> Result<()> {
        let mut logits = None;
        loop {
            let Some(remaining) = self.flush_remaining() else {
                bail!("internal: no flush")
            };
            if remaining == 0 {
                break;
            }
            logits = Some(self.flush_forward(remaining)?);
        }
        let logits = match logits {
            Some(l) => l,
            None => {
                // Caught up already: run the last token again for its logits.
                let f = self.flush.pending.as_mut().context("internal: no flush")?;
                let n = f.cache.len();
                f.cache.truncate(n - 1);
                let last = self.body.len() - 1;
                let ids = self.body.ids(last, last + 1);
                self.caches
                    .forward_into(&mut f.cache, &ids, &mut self.stats.forward_seconds)?
            }
        };
        if stall {
            self.stats.flush_stalls += 1;
        }
        self.swap(logits)
    }

    /// Choose a cut point and start building the flushed cache. `forced`: the context is at its
    /// limit, so the cut may go after "now" and keep more or less than `keep`.
    fn start_flush(&mut self, forced: bool) -> Result<bool> {
        let Some(cut) = self.choose_cut(forced) else {
            if forced {
                bail!(
                    "the context reached its limit of {} tokens with no place to cut it (a larger \
                     --context, or a shorter lookahead, leaves room)",
                    self.flush.cfg.limit
                );
            }
            return Ok(false);
        };
        let cache = self.caches.take_spare()?;
        self.flush.pending = Some(PendingFlush { cut, cache });
        Ok(true)
    }

    /// A cut point among the body's candidates ([`cut_candidates`]).
    ///
    /// The first candidate whose kept part fits in `keep` tokens wins, preferring one at or
    /// before "now" with every event before it released (so human input can still reach every
    /// tentative event). When the context is nearly full and there is none, the cut may go
    /// later: the tentative events before it are committed (released on time, no longer cut by
    /// human input) and human input before it lands at its tick. Forced (at the limit), a cut
    /// keeping more than `keep` is taken if nothing else fits.
    fn choose_cut(&self, forced: bool) -> Option<Cut> {
        let cfg = &self.flush.cfg;
        let total = self.body.len();
        let min_start = total.saturating_sub(cfg.keep);
        let first_unreleased = self.body.first_unreleased();
        let cands = cut_candidates(&self.body);
        let strict = |c: &&Cut| {
            c.tick <= self.flush.floor_tick && first_unreleased.is_none_or(|u| c.tick <= u)
        };
        if let Some(c) = cands.iter().filter(|c| c.token >= min_start).find(strict) {
            return Some(*c);
        }
        let nearly_full = total >= (cfg.flush_start + cfg.limit) / 2;
        if forced || nearly_full {
            if let Some(c) = cands.iter().find(|c| c.token >= min_start) {
                return Some(*c);
            }
        }
        if forced {
            return cands
                .iter()
                .rev()
                .find(|c| total - c.token < cfg.limit)
                .copied();
        }
        None
    }

    /// Swap in the flushed cache: drop the body before the cut point, rebase ticks.
    fn swap(&mut self, logits: Vec<f32>) -> Result<()> {
        let f = self.flush.pending.take().context("internal: no flush")?;
        self.caches.swap_live(f.cache);
        self.logits = logits;
        self.stats.flushes += 1;
        self.body.rebase(f.cut)
    }
}

/// Every word start that is a token boundary where the word is an instant (the new body
/// opens with an instant at its tick 0) or a time word after a time word (it opens with the
/// rest of a canonical time sequence), in text order.
fn cut_candidates(body: &Body) -> Vec<Cut> {
    let (text, ends) = (body.text(), body.ends());
    let mut out = Vec::new();
    let mut tick = body.base_tick();
    let mut prev_time = false;
    let mut k = 0usize; // tokens ending at or before the word start
    let mut i = 0usize;
    while i < text.len() {
        // text[i] is the space opening a word.
        let end = text[i + 1..]
            .iter()
            .position(|b| *b == b' ')
            .map_or(text.len(), |p| i + 1 + p);
        let word = &text[i + 1..end];
        let is_time = word.first() == Some(&b'P');
        let is_instant = word.first().is_some_and(|b| b.is_ascii_hexdigit());
        while k < ends.len() && ends[k] <= i {
            k += 1;
        }
        let aligned = k > 0 && ends[k - 1] == i;
        // (A word not begun yet, after a trailing space, is no cut point: its kind is unknown.)
        if aligned && (is_instant || (is_time && prev_time)) {
            out.push(Cut {
                token: k,
                byte: i,
                tick,
            });
        }
        if is_time {
            // (The last word may be a time word still being written: its value is unused.)
            tick += time_word_value(word).unwrap_or(0);
        }
        prev_time = is_time;
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits() {
        assert!(ContextConfig::for_limit(512).validate().is_ok());
        assert!(ContextConfig::for_limit(16).validate().is_err());
        let mut c = ContextConfig::for_limit(512);
        c.keep = 300;
        assert!(c.validate().is_err());
    }
}
