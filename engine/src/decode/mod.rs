//! The decoder: the token context the model sees and the sampling over it. [`Context`] is the
//! facade the session drives; docs/ENGINE.md "The decoder's modules" maps who calls whom.
//!
//! - `body`: the header and the body's text, tokens, byte ends and events, kept in agreement,
//!   and the human prefix cut (a tokenizer, no model; its text and tokens in `body/tokens.rs`);
//! - `flush`: the KV-cache policy — keeping the live cache up to date, the periodic flush and
//!   its pacing;
//! - `cache`: the live and spare KV caches, the forward pass, timing;
//! - [`vocab`]: every token's text and the vocabulary trie;
//! - [`mask`]: the policy, the mask state, deadlines and the fallback;
//! - [`sample`]: temperature and top-p.

mod body;
mod cache;
mod flush;
pub mod mask;
pub mod sample;
pub mod vocab;

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use tokenizers::Tokenizer;

use crate::events::{GrammarState, LanguageParams, NoteEvent, NoteSet};
use crate::model::Olmo2;

pub use body::CtxEvent;
pub use flush::ContextConfig;
pub use mask::{
    allowed_tokens, fallback_text, grammar_only_tokens, Deadlines, MaskState, Policy,
    MODEL_CHANNEL_MASK,
};
pub use sample::{Sampler, SamplingParams};
pub use vocab::{TokenTable, VocabTrie};

use body::{Body, Edit};
use cache::{timed, Caches};
use flush::Flush;

/// What the context did, for reports.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ContextStats {
    /// Times human input truncated the KV cache.
    pub prefix_cuts: u64,
    /// Tentative model events removed by human input.
    pub events_cut: u64,
    /// Tokens fed again after prefix cuts (and human tokens appended).
    pub tokens_refed: u64,
    /// Flushes completed (cache swaps).
    pub flushes: u64,
    /// Flushes that had to finish at once because the context reached its limit.
    pub flush_stalls: u64,
    /// Flushes abandoned because a prefix cut went before their cut point.
    pub flushes_cancelled: u64,
    /// Tokens prefilled into flush caches.
    pub flush_tokens: u64,
    /// Model tokens appended.
    pub tokens_generated: u64,
    /// Tokens run through the cache only to imagine an instant, then forgotten.
    pub tokens_imagined: u64,
    /// Seconds spent appending model tokens: their forward pass, plus the flush prefill done
    /// with them.
    pub generate_seconds: f64,
    /// The longest time one model token took to append (a flush stall shows here).
    pub max_token_seconds: f64,
    /// Seconds spent in all forward passes (prefill, re-feed, flush, generation).
    pub forward_seconds: f64,
}

/// The token context with its KV caches: what the model sees (docs/ENGINE.md "The context and
/// the KV cache").
pub struct Context {
    body: Body,
    caches: Caches,
    flush: Flush,
    /// For the next token, after the whole context.
    logits: Vec<f32>,
    stats: ContextStats,
}

impl Context {
    /// A context opened by `header` (metadata words, special tokens of the tokenizer; when empty,
    /// the end token `opener` opens the context instead), prefilled.
    pub fn new(
        model: Arc<Olmo2>,
        tokenizer: Arc<Tokenizer>,
        table: Arc<TokenTable>,
        params: LanguageParams,
        header_words: &[String],
        opener: u32,
        cfg: ContextConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        params.validate()?;
        ensure!(
            cfg.limit <= model.max_position(),
            "a context of {} tokens is longer than the model's {} positions",
            cfg.limit,
            model.max_position()
        );
        let body = Body::new(tokenizer, table, params, header_words, opener)?;
        ensure!(
            body.header().len() < cfg.keep,
            "the header takes {} tokens, more than a flush keeps ({})",
            body.header().len(),
            cfg.keep
        );
        let caches = Caches::new(model, cfg.limit)?;
        let mut ctx = Self {
            body,
            caches,
            flush: Flush::new(cfg),
            logits: Vec::new(),
            stats: ContextStats::default(),
        };
        ctx.sync()?;
        Ok(ctx)
    }

    // ---- views -------------------------------------------------------------------------------

    pub fn config(&self) -> &ContextConfig {
        self.flush.config()
    }

    pub fn params(&self) -> &LanguageParams {
        self.body.params()
    }

    /// Logits for the next token (after the whole context).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The grammar state at the end of the body (ticks relative to [`base_tick`](Self::base_tick)).
    pub fn grammar(&self) -> &GrammarState {
        self.body.grammar()
    }

    /// The absolute tick of the body's tick 0.
    pub fn base_tick(&self) -> u64 {
        self.body.base_tick()
    }

    /// The notes sounding at the body's start (before its first word).
    pub fn base_sounding(&self) -> &NoteSet {
        self.body.base_sounding()
    }

    pub fn header_tokens(&self) -> &[u32] {
        self.body.header()
    }

    pub fn body_tokens(&self) -> &[u32] {
        self.body.tokens()
    }

    /// `header ++ body`.
    pub fn tokens(&self) -> Vec<u32> {
        self.body.ids(0, self.body.len())
    }

    /// The body text (each word preceded by a space).
    pub fn body_text(&self) -> &[u8] {
        self.body.text()
    }

    /// The text of the word being written (after the last space).
    pub fn current_word(&self) -> &[u8] {
        self.body.current_word()
    }

    pub fn events(&self) -> &[CtxEvent] {
        self.body.events()
    }

    /// Tokens in the live KV cache.
    pub fn cache_len(&self) -> usize {
        self.caches.len()
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.tokens().is_empty()
    }

    pub fn stats(&self) -> &ContextStats {
        &self.stats
    }

    /// Whether a flushed cache is being built.
    pub fn flush_pending(&self) -> bool {
        self.flush.pending()
    }

    /// The earliest absolute tick the text can reach from here: the instant being written, or
    /// the tick after the time word being written in its shortest form.
    pub fn model_tick(&self) -> u64 {
        self.body.model_tick()
    }

    /// Deadlines (in the grammar's ticks) of the sounding channel-0 notes.
    pub fn deadlines(&self, max_note_ticks: u64) -> Deadlines {
        self.body.deadlines(max_note_ticks)
    }

    /// Set the decoder's "now": flushes never cut after it.
    pub fn set_floor(&mut self, tick: u64) {
        self.flush.set_floor(tick);
    }

    // ---- model tokens ------------------------------------------------------------------------

    /// Append one model token (its text must continue the body); returns the channel-0 events it
    /// completed (absolute ticks, tentative).
    pub fn push_token(&mut self, id: u32) -> Result<Vec<NoteEvent>> {
        let done = self.body.push_token(id)?;
        self.stats.tokens_generated += 1;
        let (synced, took) = timed(|| self.sync());
        synced?;
        self.stats.generate_seconds += took;
        self.stats.max_token_seconds = self.stats.max_token_seconds.max(took);
        Ok(done)
    }

    /// Append text the grammar accepts (a forced word): tokenized, then pushed token by token.
    pub fn push_text(&mut self, text: &[u8]) -> Result<Vec<NoteEvent>> {
        let s = std::str::from_utf8(text).context("forced text is not UTF-8")?;
        let ids = self.body.encode(s)?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.push_token(id)?);
        }
        Ok(out)
    }

    /// Run tokens through the live KV cache after the context, without adding them to it: the
    /// model imagining a continuation (the session imagines the band's part of an instant).
    /// Returns the last token's logits. The context's own logits and text are unchanged;
    /// [`forget_imagined`](Self::forget_imagined) drops the imagined rows.
    pub fn imagine(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        ensure!(
            self.caches.len() >= self.len(),
            "internal: the cache is behind the context"
        );
        ensure!(
            self.caches.remaining() >= ids.len(),
            "internal: no room to imagine {} tokens",
            ids.len()
        );
        let logits = self.caches.forward(ids, &mut self.stats.forward_seconds)?;
        self.stats.tokens_imagined += ids.len() as u64;
        Ok(logits)
    }

    /// Drop the rows [`imagine`](Self::imagine) added (O(1): a prefix cut of the cache).
    pub fn forget_imagined(&mut self) {
        let len = self.len();
        self.caches.truncate(len);
    }

    /// Tokens that can still be imagined after the context before the cache is full.
    pub fn imagine_room(&self) -> usize {
        self.caches.capacity().saturating_sub(self.len())
    }

    // ---- release -----------------------------------------------------------------------------

    /// Hand out the tentative model events due by `tick` (absolute), in text order.
    pub fn release_until(&mut self, tick: u64) -> Vec<NoteEvent> {
        self.body.release_until(tick)
    }

    /// Model events committed by a flush (not released yet, no longer in the body).
    pub fn committed(&self) -> &[NoteEvent] {
        self.body.committed()
    }

    /// Tentative (unreleased) model events still in the body (human input can cut them).
    pub fn tentative(&self) -> impl Iterator<Item = &NoteEvent> {
        self.body
            .events()
            .iter()
            .filter(|e| !e.released)
            .map(|e| &e.event)
    }

    // ---- human events ------------------------------------------------------------------------

    /// Insert human events (channels 1–15, valid against the human notes already in the
    /// context, ticks at or after [`base_tick`](Self::base_tick)): cut the tentative model events
    /// at or after the earliest of them, re-serialize, prefix-cut the cache and feed the rest.
    pub fn insert_human(&mut self, evs: &[NoteEvent]) -> Result<()> {
        let Some(t) = evs.iter().map(|e| e.tick).min() else {
            return Ok(());
        };
        ensure!(
            t >= self.base_tick(),
            "human event at tick {t} is before the context ({})",
            self.base_tick()
        );
        ensure!(
            evs.iter().all(|e| (1..16).contains(&e.channel)),
            "human events are on channels 1–15"
        );
        let (edit, cut) = self.body.insert_human(evs, t)?;
        self.stats.events_cut += cut as u64;
        self.edited(edit)
    }

    /// Drop the time words after the last event (the model waited there for the band, which did
    /// not play): the model writes its next step from its last event again.
    pub fn drop_trailing_time(&mut self) -> Result<()> {
        match self.body.drop_trailing_time()? {
            Some(edit) => self.edited(edit),
            None => Ok(()),
        }
    }

    fn edited(&mut self, edit: Edit) -> Result<()> {
        if edit.cut {
            self.stats.prefix_cuts += 1;
        }
        self.stats.tokens_refed += edit.refed as u64;
        self.apply_edit(edit)
    }
}
