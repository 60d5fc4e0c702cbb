//! The token context and the KV-cache policy: the one place that decides what the model sees.
//!
//! The context is a metadata header (kept through everything) and a body of event text. The body
//! is held three ways that always agree: its tokens (with each token's byte end), its text, and
//! its events (human and model, with their absolute ticks, sorted in text order). The live
//! [`KvCache`] holds a prefix of `header ++ body`; after every change the rest is fed and the
//! next logits computed.
//!
//! - **Model tokens** are appended one at a time ([`Context::push_token`]); the grammar reads
//!   their bytes and each completed channel-0 item becomes a *tentative* event.
//! - **Human events** ([`Context::insert_human`]) cut the model's tentative events at or after
//!   their tick, go into the event list, and the body is re-serialized canonically. The body text
//!   before the first changed word is unchanged and so are its tokens (the pre-tokenizer splits
//!   at spaces, so a word's tokens never depend on what follows it); the text from that word on
//!   is re-tokenized, the longest common token prefix is kept, and the cache is truncated to it
//!   (a prefix cut: every kept row sits at its original position, so RoPE stays valid) before
//!   the rest is fed. Released events are never taken back.
//! - **Periodic flush** (design document §5.2; no rolling window): once the context reaches
//!   `flush_start` tokens, a cut point is chosen so that the header plus the newest body tokens
//!   fit in `keep` (about half the limit), at a word boundary, preferably at or before "now" with
//!   every event before it released (otherwise the tentative events before it are committed).
//!   A second cache is filled with `header ++ kept body` beside the live one, in large chunks
//!   when the decoder is idle ([`Context::flush_work`]), and paced with the appended tokens only
//!   when idle time has not kept up ([`ContextConfig::step_chunk`]); the live cache keeps generating;
//!   tokens appended meanwhile are replayed into it, and when it has caught up the two are
//!   swapped. Only if the context hits `limit` first is the rest done at once (a stall, counted).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use tokenizers::Tokenizer;

use crate::events::{
    events_to_text, EventKind, GrammarState, LanguageParams, LastWord, NoteEvent, Sounding,
};
use crate::model::{KvCache, Olmo2};
use crate::sampler::{Deadlines, TokenTable};

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

/// One event of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtxEvent {
    /// Absolute tick.
    pub event: NoteEvent,
    pub human: bool,
    /// Model events: handed to the output (never taken back). Human events are always true.
    pub released: bool,
}

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

struct PendingFlush {
    /// First kept body token.
    body_start: usize,
    /// Its byte offset in the body text.
    byte_start: usize,
    /// Absolute tick at the cut point (the new body's tick 0).
    base_tick: u64,
    cache: KvCache,
}

/// Reads completed instant items out of the grammar's byte stream.
#[derive(Debug, Clone, Copy, Default)]
struct ItemReader {
    buf: [u8; 6],
    len: usize,
}

impl ItemReader {
    /// Feed one byte to `g`; returns the completed item, if this byte completed one.
    fn step(&mut self, g: &mut GrammarState, b: u8) -> Result<Option<NoteEvent>, u8> {
        let was_in = g.in_item();
        if g.feed(&[b]).is_err() {
            return Err(b);
        }
        if g.in_item() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
            return Ok(None);
        }
        if !was_in {
            return Ok(None);
        }
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
        let item = &self.buf[..self.len];
        self.len = 0;
        Ok(parse_item(item, g.tick()))
    }
}

fn parse_item(item: &[u8], tick: u64) -> Option<NoteEvent> {
    let ch = char::from(*item.first()?).to_digit(16)? as u8;
    let digits = item.get(2..5)?;
    let pitch = digits.iter().try_fold(0u32, |a, d| {
        d.is_ascii_digit().then(|| a * 10 + u32::from(d - b'0'))
    })?;
    let pitch = u8::try_from(pitch).ok().filter(|p| *p < 128)?;
    match item.get(1)? {
        b'-' if item.len() == 5 => Some(NoteEvent::off(tick, ch, pitch)),
        b'+' if item.len() == 6 => Some(NoteEvent::on(tick, ch, pitch, item[5].checked_sub(b'a')?)),
        _ => None,
    }
}

/// The token context with its KV caches (see the module doc).
pub struct Context {
    model: Arc<Olmo2>,
    tokenizer: Arc<Tokenizer>,
    table: Arc<TokenTable>,
    params: LanguageParams,
    cfg: ContextConfig,
    header: Vec<u32>,
    body: Vec<u32>,
    /// Byte end of each body token in `text`.
    ends: Vec<usize>,
    /// The body text: every word preceded by one space.
    text: Vec<u8>,
    base_tick: u64,
    base_sounding: Sounding,
    /// Absolute on-ticks of the channel-0 notes sounding at the body's start.
    base_on: [Option<u64>; 128],
    events: Vec<CtxEvent>,
    /// Tentative model events a flush cut off the body: released on time, never cut.
    committed: Vec<NoteEvent>,
    grammar: GrammarState,
    reader: ItemReader,
    /// Absolute on-ticks of the channel-0 notes sounding at the end of the body.
    on_tick: [Option<u64>; 128],
    cache: KvCache,
    spare: Option<KvCache>,
    flush: Option<PendingFlush>,
    logits: Vec<f32>,
    /// The earliest tick a flush may cut at (the decoder's "now").
    floor_tick: u64,
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
        let header = if header_words.is_empty() {
            vec![opener]
        } else {
            let text = header_words.join(" ");
            let enc = tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| anyhow::anyhow!("tokenizing the header {text:?}: {e}"))?;
            enc.get_ids().to_vec()
        };
        ensure!(
            header.len() < cfg.keep,
            "the header takes {} tokens, more than a flush keeps ({})",
            header.len(),
            cfg.keep
        );
        let grammar = GrammarState::resume(params, 0, Sounding::default(), LastWord::Header, true);
        let cache = model.new_cache(cfg.limit)?;
        let spare = Some(model.new_cache(cfg.limit)?);
        let mut ctx = Self {
            model,
            tokenizer,
            table,
            params,
            cfg,
            header,
            body: Vec::new(),
            ends: Vec::new(),
            text: Vec::new(),
            base_tick: 0,
            base_sounding: Sounding::default(),
            base_on: [None; 128],
            events: Vec::new(),
            committed: Vec::new(),
            grammar,
            reader: ItemReader::default(),
            on_tick: [None; 128],
            cache,
            spare,
            flush: None,
            logits: Vec::new(),
            floor_tick: 0,
            stats: ContextStats::default(),
        };
        ctx.sync()?;
        Ok(ctx)
    }

    // ---- views -------------------------------------------------------------------------------

    pub fn config(&self) -> &ContextConfig {
        &self.cfg
    }

    pub fn params(&self) -> &LanguageParams {
        &self.params
    }

    /// Logits for the next token (after the whole context).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The grammar state at the end of the body (ticks relative to [`base_tick`](Self::base_tick)).
    pub fn grammar(&self) -> &GrammarState {
        &self.grammar
    }

    /// The absolute tick of the body's tick 0.
    pub fn base_tick(&self) -> u64 {
        self.base_tick
    }

    /// The notes sounding at the body's start (before its first word).
    pub fn base_sounding(&self) -> &Sounding {
        &self.base_sounding
    }

    pub fn header_tokens(&self) -> &[u32] {
        &self.header
    }

    pub fn body_tokens(&self) -> &[u32] {
        &self.body
    }

    /// `header ++ body`.
    pub fn tokens(&self) -> Vec<u32> {
        let mut all = self.header.clone();
        all.extend_from_slice(&self.body);
        all
    }

    /// The body text (each word preceded by a space).
    pub fn body_text(&self) -> &[u8] {
        &self.text
    }

    /// The text of the word being written (after the last space).
    pub fn current_word(&self) -> &[u8] {
        match self.text.iter().rposition(|b| *b == b' ') {
            Some(i) => &self.text[i + 1..],
            None => &self.text,
        }
    }

    pub fn events(&self) -> &[CtxEvent] {
        &self.events
    }

    /// Tokens in the live KV cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    pub fn stats(&self) -> &ContextStats {
        &self.stats
    }

    /// Whether a flushed cache is being built.
    pub fn flush_pending(&self) -> bool {
        self.flush.is_some()
    }

    /// The earliest absolute tick the text can reach from here: the instant being written, or
    /// the tick after the time word being written in its shortest form.
    pub fn model_tick(&self) -> u64 {
        let g = &self.grammar;
        let rel = if g.in_time_word() {
            g.tick()
                .saturating_add(u64::from(g.pending_time().unwrap_or(1)))
        } else {
            g.tick()
        };
        self.base_tick.saturating_add(rel)
    }

    /// Deadlines (in the grammar's ticks) of the sounding channel-0 notes.
    pub fn deadlines(&self, max_note_ticks: u64) -> Deadlines {
        let mut d = Deadlines::default();
        for (p, on) in self.on_tick.iter().enumerate() {
            if let Some(on) = on {
                let rel = (on.saturating_add(max_note_ticks)).saturating_sub(self.base_tick);
                d.set(p as u8, rel);
            }
        }
        d
    }

    /// Set the decoder's "now": flushes never cut after it.
    pub fn set_floor(&mut self, tick: u64) {
        self.floor_tick = self.floor_tick.max(tick);
    }

    // ---- model tokens --------------------------------------------------------------------------

    /// Append one model token (its text must continue the body); returns the channel-0 events it
    /// completed (absolute ticks, tentative).
    pub fn push_token(&mut self, id: u32) -> Result<Vec<NoteEvent>> {
        let bytes = self.table.bytes(id).to_vec();
        ensure!(!bytes.is_empty(), "token {id} has no text");
        let mut g = self.grammar;
        let mut reader = self.reader;
        let mut done = Vec::new();
        for &b in &bytes {
            match reader.step(&mut g, b) {
                Ok(Some(e)) => done.push(NoteEvent {
                    tick: e.tick + self.base_tick,
                    ..e
                }),
                Ok(None) => {}
                Err(_) => bail!(
                    "token {id} ({:?}) does not continue the context",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        self.grammar = g;
        self.reader = reader;
        self.text.extend_from_slice(&bytes);
        self.body.push(id);
        self.ends.push(self.text.len());
        for e in &done {
            self.note_on_tick(e);
            self.events.push(CtxEvent {
                event: *e,
                human: false,
                released: false,
            });
        }
        self.stats.tokens_generated += 1;
        let t0 = Instant::now();
        self.sync()?;
        let took = t0.elapsed().as_secs_f64();
        self.stats.generate_seconds += took;
        self.stats.max_token_seconds = self.stats.max_token_seconds.max(took);
        Ok(done)
    }

    /// Run tokens through the live KV cache after the context, without adding them to it: the
    /// model imagining a continuation (the session imagines the band's part of an instant).
    /// Returns the last token's logits. The context's own logits and text are unchanged;
    /// [`forget_imagined`](Self::forget_imagined) drops the imagined rows.
    pub fn imagine(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        ensure!(
            self.cache.len() >= self.len(),
            "internal: the cache is behind the context"
        );
        ensure!(
            self.cache.remaining() >= ids.len(),
            "internal: no room to imagine {} tokens",
            ids.len()
        );
        let t0 = Instant::now();
        let logits = self.model.forward(&mut self.cache, ids)?;
        self.stats.forward_seconds += t0.elapsed().as_secs_f64();
        self.stats.tokens_imagined += ids.len() as u64;
        Ok(logits)
    }

    /// Drop the rows [`imagine`](Self::imagine) added (O(1): a prefix cut of the cache).
    pub fn forget_imagined(&mut self) {
        let len = self.len();
        self.cache.truncate(len);
    }

    /// Tokens that can still be imagined after the context before the cache is full.
    pub fn imagine_room(&self) -> usize {
        self.cache.capacity().saturating_sub(self.len())
    }

    /// Append text the grammar accepts (a forced word): tokenized, then pushed token by token.
    pub fn push_text(&mut self, text: &[u8]) -> Result<Vec<NoteEvent>> {
        let s = std::str::from_utf8(text).context("forced text is not UTF-8")?;
        let ids = self.encode(s)?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.push_token(id)?);
        }
        Ok(out)
    }

    fn note_on_tick(&mut self, e: &NoteEvent) {
        if e.channel != 0 {
            return;
        }
        let slot = &mut self.on_tick[usize::from(e.pitch)];
        *slot = match e.kind {
            EventKind::On { .. } => Some(e.tick),
            EventKind::Off => None,
        };
    }

    // ---- release -------------------------------------------------------------------------------

    /// Hand out the tentative model events due by `tick` (absolute), in text order.
    pub fn release_until(&mut self, tick: u64) -> Vec<NoteEvent> {
        let n = self.committed.partition_point(|e| e.tick <= tick);
        let mut out: Vec<NoteEvent> = self.committed.drain(..n).collect();
        for e in &mut self.events {
            if !e.released && e.event.tick <= tick {
                e.released = true;
                out.push(e.event);
            }
        }
        out
    }

    /// Model events committed by a flush (not released yet, no longer in the body).
    pub fn committed(&self) -> &[NoteEvent] {
        &self.committed
    }

    /// Tentative (unreleased) model events still in the body (human input can cut them).
    pub fn tentative(&self) -> impl Iterator<Item = &NoteEvent> {
        self.events.iter().filter(|e| !e.released).map(|e| &e.event)
    }

    // ---- human events --------------------------------------------------------------------------

    /// Insert human events (channels 1–15, valid against the human notes already in the
    /// context, ticks at or after [`base_tick`](Self::base_tick)): cut the tentative model events
    /// at or after the earliest of them, re-serialize, prefix-cut the cache and feed the rest.
    pub fn insert_human(&mut self, evs: &[NoteEvent]) -> Result<()> {
        let Some(t) = evs.iter().map(|e| e.tick).min() else {
            return Ok(());
        };
        ensure!(
            t >= self.base_tick,
            "human event at tick {t} is before the context ({})",
            self.base_tick
        );
        ensure!(
            evs.iter().all(|e| (1..16).contains(&e.channel)),
            "human events are on channels 1–15"
        );
        let before = self.events.len();
        self.events
            .retain(|e| e.human || e.released || e.event.tick < t);
        self.stats.events_cut += (before - self.events.len()) as u64;
        self.events.extend(evs.iter().map(|&event| CtxEvent {
            event,
            human: true,
            released: true,
        }));
        self.events.sort_by_key(|e| e.event);
        let new_text = self.serialize_body();
        self.replace_body_text(new_text)
    }

    /// Drop the time words after the last event (the model waited there for the band, which did
    /// not play): the model writes its next step from its last event again.
    pub fn drop_trailing_time(&mut self) -> Result<()> {
        let new_text = self.serialize_body();
        if new_text == self.text {
            return Ok(());
        }
        self.replace_body_text(new_text)
    }

    /// The canonical body text of the event list.
    fn serialize_body(&self) -> Vec<u8> {
        let rel: Vec<NoteEvent> = self
            .events
            .iter()
            .map(|e| NoteEvent {
                tick: e.event.tick - self.base_tick,
                ..e.event
            })
            .collect();
        let mut text = events_to_text(&rel, &self.params, &[]).into_bytes();
        if text.last() == Some(&b'\n') {
            text.pop();
        }
        if !text.is_empty() {
            text.insert(0, b' ');
        }
        text
    }

    /// Replace the body text, keeping the longest token prefix that still holds.
    fn replace_body_text(&mut self, new_text: Vec<u8>) -> Result<()> {
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
        let old_len = self.body.len();
        let mut p = k;
        while p < old_len && p - k < enc.len() && self.body[p] == enc[p - k] {
            p += 1;
        }
        let mut body = self.body[..k].to_vec();
        body.extend_from_slice(&enc);
        let mut ends = self.ends[..k].to_vec();
        let mut at = b;
        for &id in &enc {
            at += self.table.bytes(id).len();
            ends.push(at);
        }
        if p < old_len {
            self.stats.prefix_cuts += 1;
        }
        self.stats.tokens_refed += (body.len() - p) as u64;
        self.body = body;
        self.ends = ends;
        self.text = new_text;
        self.cache.truncate(self.header.len() + p);
        let h = self.header.len();
        match &mut self.flush {
            Some(f) if p >= f.body_start => f.cache.truncate(h + (p - f.body_start)),
            Some(_) => self.cancel_flush(),
            None => {}
        }
        self.rebuild_state()?;
        self.sync()
    }

    /// Tokenize body text (which starts at a word start) and check its bytes round-trip.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
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

    /// Recompute the grammar state, the item reader and the channel-0 on-ticks from the base.
    fn rebuild_state(&mut self) -> Result<()> {
        let mut g =
            GrammarState::resume(self.params, 0, self.base_sounding, LastWord::Header, true);
        let mut reader = ItemReader::default();
        for (i, &b) in self.text.iter().enumerate() {
            if reader.step(&mut g, b).is_err() {
                bail!(
                    "internal: the context body is not valid event text at byte {i}: {:?}",
                    String::from_utf8_lossy(&self.text)
                );
            }
        }
        self.grammar = g;
        self.reader = reader;
        self.on_tick = self.base_on;
        let events = std::mem::take(&mut self.events);
        for e in &events {
            self.note_on_tick(&e.event);
        }
        self.events = events;
        Ok(())
    }

    // ---- the cache -------------------------------------------------------------------------------

    fn token_at(&self, i: usize) -> u32 {
        if i < self.header.len() {
            self.header[i]
        } else {
            self.body[i - self.header.len()]
        }
    }

    fn forward(&mut self, flush_cache: bool, from: usize, to: usize) -> Result<Vec<f32>> {
        let ids: Vec<u32> = (from..to).map(|i| self.token_at(i)).collect();
        let t0 = Instant::now();
        let logits = if flush_cache {
            let f = self.flush.as_mut().context("internal: no flush cache")?;
            self.model.forward(&mut f.cache, &ids)?
        } else {
            self.model.forward(&mut self.cache, &ids)?
        };
        self.stats.forward_seconds += t0.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// Bring the live cache up to date and compute the next logits; advance a pending flush.
    fn sync(&mut self) -> Result<()> {
        let total = self.len();
        if let Some(remaining) = self.flush_remaining() {
            if remaining <= self.cfg.step_chunk {
                return self.finish_flush(false);
            }
        }
        if total > self.cfg.limit {
            // At the limit: finish the flush now (a stall). A pending flush whose kept part has
            // grown past what leaves room (human input came in meanwhile) is chosen again.
            if let Some(f) = &self.flush {
                let new_len = total - f.body_start;
                if new_len > (self.cfg.keep + self.cfg.limit) / 2 {
                    self.cancel_flush();
                }
            }
            if self.flush.is_none() {
                self.start_flush(true)?;
            }
            return self.finish_flush(true);
        }
        let q = self.cache.len().min(total - 1);
        self.cache.truncate(q);
        self.logits = self.forward(false, q, total)?;
        if let Some(remaining) = self.flush_remaining() {
            // The flush is built in idle time, in large chunks (a prefill of a few tokens costs
            // nearly as much as one of many). Only when idle time has not kept up is it paced
            // here, so it still catches up before the limit: what remains is kept within
            // (step_chunk − 1) tokens per token of headroom, so each appended token then costs
            // at most `step_chunk` prefill tokens, and a burst of human tokens its share at once.
            let headroom = self.cfg.limit - total;
            let allowed = (self.cfg.step_chunk.max(2) - 1) * headroom;
            let chunk = remaining.saturating_sub(allowed);
            if chunk > 0 {
                self.flush_work(chunk)?;
            }
        } else if total >= self.cfg.flush_start {
            self.start_flush(false)?;
        }
        Ok(())
    }

    /// Drop a pending flush (its cache goes back to spare).
    fn cancel_flush(&mut self) {
        if let Some(mut f) = self.flush.take() {
            f.cache.clear();
            self.spare = Some(f.cache);
            self.stats.flushes_cancelled += 1;
        }
    }

    /// Tokens a pending flush still has to prefill (of `header ++ body[body_start..]`).
    fn flush_remaining(&self) -> Option<usize> {
        let f = self.flush.as_ref()?;
        let new_len = self.header.len() + self.body.len() - f.body_start;
        Some(new_len - f.cache.len())
    }

    /// Prefill up to `max_tokens` of a pending flush (starting one if the context is past
    /// `flush_start`); swap when it has caught up. Returns whether any work was done.
    pub fn flush_work(&mut self, max_tokens: usize) -> Result<bool> {
        if self.flush.is_none()
            && (self.len() < self.cfg.flush_start || !self.start_flush(false)?)
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
        let (from, to) = self.flush_span(max_tokens)?;
        self.forward(true, from, to)?;
        self.stats.flush_tokens += (to - from) as u64;
        Ok(true)
    }

    /// Positions (in `header ++ body`) of the next `n` tokens the flush cache needs.
    fn flush_span(&self, n: usize) -> Result<(usize, usize)> {
        let f = self.flush.as_ref().context("internal: no flush")?;
        let h = self.header.len();
        let filled = f.cache.len();
        // The flush cache's token i is header[i] for i < h, then body[body_start + i - h].
        let from = if filled < h {
            filled
        } else {
            h + f.body_start + (filled - h)
        };
        let end_header = if filled < h { h } else { usize::MAX };
        let to = (from + n).min(self.len()).min(end_header);
        Ok((from, to))
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
            let (from, to) = self.flush_span(remaining)?;
            logits = Some(self.forward(true, from, to)?);
            self.stats.flush_tokens += (to - from) as u64;
        }
        let logits = match logits {
            Some(l) => l,
            None => {
                // Caught up already: run the last token again for its logits.
                let f = self.flush.as_mut().context("internal: no flush")?;
                let n = f.cache.len();
                f.cache.truncate(n - 1);
                let last = self.len() - 1;
                self.forward(true, last, last + 1)?
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
        let Some((body_start, byte_start, base_tick)) = self.choose_cut(forced) else {
            if forced {
                bail!(
                    "the context reached its limit of {} tokens with no place to cut it (a larger \
                     --context, or a shorter lookahead, leaves room)",
                    self.cfg.limit
                );
            }
            return Ok(false);
        };
        let mut cache = match self.spare.take() {
            Some(c) => c,
            None => self.model.new_cache(self.cfg.limit)?,
        };
        cache.clear();
        self.flush = Some(PendingFlush {
            body_start,
            byte_start,
            base_tick,
            cache,
        });
        Ok(true)
    }

    /// A cut point: (first kept body token, its byte offset, the absolute tick there).
    ///
    /// Candidates are word starts that are token boundaries, where the word is an instant (the
    /// new body opens with an instant at its tick 0) or a time word after a time word (the new
    /// body opens with the rest of a canonical time sequence). The first candidate whose kept
    /// part fits in `keep` tokens wins, preferring one at or before "now" with every event
    /// before it released (so human input can still reach every tentative event). When the
    /// context is nearly full and there is none, the cut may go later: the tentative events
    /// before it are committed (released on time, no longer cut by human input) and human input
    /// before it lands at its tick. Forced (at the limit), a cut keeping more than `keep` is
    /// taken if nothing else fits.
    fn choose_cut(&self, forced: bool) -> Option<(usize, usize, u64)> {
        let h = self.header.len();
        let total = h + self.body.len();
        let min_start = total.saturating_sub(self.cfg.keep);
        let first_unreleased = self
            .events
            .iter()
            .find(|e| !e.released)
            .map(|e| e.event.tick);
        let cands = self.cut_candidates();
        let strict = |&(_, _, tick): &(usize, usize, u64)| {
            tick <= self.floor_tick && first_unreleased.is_none_or(|u| tick <= u)
        };
        if let Some(c) = cands.iter().find(|c| c.0 >= min_start && strict(c)) {
            return Some(*c);
        }
        let nearly_full = total >= (self.cfg.flush_start + self.cfg.limit) / 2;
        if forced || nearly_full {
            if let Some(c) = cands.iter().find(|c| c.0 >= min_start) {
                return Some(*c);
            }
        }
        if forced {
            return cands
                .iter()
                .rev()
                .find(|c| total - c.0 < self.cfg.limit)
                .copied();
        }
        None
    }

    /// Every possible cut point (see [`choose_cut`](Self::choose_cut)), in text order.
    fn cut_candidates(&self) -> Vec<(usize, usize, u64)> {
        let mut out = Vec::new();
        let mut tick = self.base_tick;
        let mut prev_time = false;
        let mut k = 0usize; // tokens ending at or before the word start
        let mut i = 0usize;
        while i < self.text.len() {
            // self.text[i] is the space opening a word.
            let end = self.text[i + 1..]
                .iter()
                .position(|b| *b == b' ')
                .map_or(self.text.len(), |p| i + 1 + p);
            let word = &self.text[i + 1..end];
            let is_time = word.first() == Some(&b'P');
            let is_instant = word.first().is_some_and(|b| b.is_ascii_hexdigit());
            while k < self.ends.len() && self.ends[k] <= i {
                k += 1;
            }
            let aligned = k > 0 && self.ends[k - 1] == i;
            // (A word not begun yet, after a trailing space, is no cut point: its kind is unknown.)
            let kind_ok = is_instant || (is_time && prev_time);
            if aligned && kind_ok {
                out.push((k, i, tick));
            }
            if is_time {
                let n = word[2.min(word.len())..]
                    .iter()
                    .try_fold(0u64, |a, d| {
                        d.is_ascii_digit().then(|| a * 10 + u64::from(d - b'0'))
                    })
                    .unwrap_or(0);
                tick += n;
            }
            prev_time = is_time;
            i = end;
        }
        out
    }

    /// Swap in the flushed cache: drop the body before the cut point, rebase ticks.
    fn swap(&mut self, logits: Vec<f32>) -> Result<()> {
        let f = self.flush.take().context("internal: no flush")?;
        // Fold the dropped events into the base state.
        for e in self.events.iter().filter(|e| e.event.tick < f.base_tick) {
            let ev = e.event;
            match ev.kind {
                EventKind::On { .. } => {
                    self.base_sounding.insert(ev.channel, ev.pitch);
                    if ev.channel == 0 {
                        self.base_on[usize::from(ev.pitch)] = Some(ev.tick);
                    }
                }
                EventKind::Off => {
                    self.base_sounding.remove(ev.channel, ev.pitch);
                    if ev.channel == 0 {
                        self.base_on[usize::from(ev.pitch)] = None;
                    }
                }
            }
        }
        let cut_off = self
            .events
            .iter()
            .filter(|e| e.event.tick < f.base_tick && !e.released)
            .map(|e| e.event);
        self.committed.extend(cut_off);
        self.committed.sort();
        self.events.retain(|e| e.event.tick >= f.base_tick);
        self.body.drain(..f.body_start);
        self.ends.drain(..f.body_start);
        for e in &mut self.ends {
            *e -= f.byte_start;
        }
        self.text.drain(..f.byte_start);
        self.base_tick = f.base_tick;
        let old = std::mem::replace(&mut self.cache, f.cache);
        let mut old = old;
        old.clear();
        self.spare = Some(old);
        self.logits = logits;
        self.stats.flushes += 1;
        self.rebuild_state()
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
    fn items_parse() {
        assert_eq!(parse_item(b"0-060", 5), Some(NoteEvent::off(5, 0, 60)));
        assert_eq!(parse_item(b"f+127h", 7), Some(NoteEvent::on(7, 15, 127, 7)));
        assert_eq!(parse_item(b"0+060", 0), None);
    }

    #[test]
    fn word_starts() {
        let t = b" 0+060e P_12 P_2";
        assert_eq!(word_start_at_or_before(t, 0), 0);
        assert_eq!(word_start_at_or_before(t, 7), 7);
        assert_eq!(word_start_at_or_before(t, 10), 7);
        assert_eq!(word_start_at_or_before(t, 16), 12);
        assert_eq!(word_start_at_or_before(t, 99), 12);
    }

    #[test]
    fn config_limits() {
        assert!(ContextConfig::for_limit(512).validate().is_ok());
        assert!(ContextConfig::for_limit(16).validate().is_err());
        let mut c = ContextConfig::for_limit(512);
        c.keep = 300;
        assert!(c.validate().is_err());
    }
}
