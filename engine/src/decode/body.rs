//! The token context without its caches: the header, and the body held three ways that always
//! agree (tokens with their byte ends, text, events), with the human prefix cut and the rebase
//! a flush makes. It needs a tokenizer and no model (docs/ENGINE.md "The context and the KV
//! cache").

use std::sync::Arc;

use anyhow::{bail, ensure, Result};
use tokenizers::Tokenizer;

use crate::events::item::PartialItem;
use crate::events::{
    events_to_text, EventKind, GrammarState, LanguageParams, LastWord, NoteEvent, NoteSet,
};

use super::flush::Cut;
use super::mask::Deadlines;
use super::vocab::TokenTable;

mod tokens;

use tokens::Tokens;

/// One event of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtxEvent {
    /// Absolute tick.
    pub event: NoteEvent,
    pub human: bool,
    /// Model events: handed to the output (never taken back). Human events are always true.
    pub released: bool,
}

/// What a change of the body text kept and what it cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    /// Body tokens before the first changed one (their cache rows stay valid).
    pub kept: usize,
    /// Whether old tokens after `kept` were dropped (a prefix cut).
    pub cut: bool,
    /// Body tokens after `kept`, to feed.
    pub refed: usize,
}

/// What the text has said by one point of it: the notes sounding, and the absolute on-ticks of
/// the channel-0 ones (for their deadlines).
#[derive(Debug, Clone, Copy)]
struct NotesAt {
    notes: NoteSet,
    on_tick: [Option<u64>; 128],
}

impl Default for NotesAt {
    fn default() -> Self {
        Self {
            notes: NoteSet::default(),
            on_tick: [None; 128],
        }
    }
}

impl NotesAt {
    fn note(&mut self, e: &NoteEvent) {
        let on = match e.kind {
            EventKind::On { .. } => {
                self.notes.insert(e.channel, e.pitch);
                Some(e.tick)
            }
            EventKind::Off => {
                self.notes.remove(e.channel, e.pitch);
                None
            }
        };
        if e.channel == 0 {
            self.on_tick[usize::from(e.pitch)] = on;
        }
    }
}

/// The header and body (see the module doc).
pub struct Body {
    params: LanguageParams,
    header: Vec<u32>,
    tokens: Tokens,
    base_tick: u64,
    /// At the body's start, before its first word.
    base: NotesAt,
    events: Vec<CtxEvent>,
    /// Tentative model events a flush cut off the body: released on time, never cut.
    committed: Vec<NoteEvent>,
    /// The grammar at the end of the body (ticks relative to `base_tick`), the item it is in,
    /// and the channel-0 on-ticks there (`notes` is unused: the grammar has them).
    grammar: GrammarState,
    item: PartialItem,
    end: NotesAt,
}

impl Body {
    /// A body opened by `header_words` (special tokens of the tokenizer; when empty, the end
    /// token `opener` opens it instead), empty.
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        table: Arc<TokenTable>,
        params: LanguageParams,
        header_words: &[String],
        opener: u32,
    ) -> Result<Self> {
        params.validate()?;
        let header = if header_words.is_empty() {
            vec![opener]
        } else {
            let text = header_words.join(" ");
            let enc = tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| anyhow::anyhow!("tokenizing the header {text:?}: {e}"))?;
            enc.get_ids().to_vec()
        };
        let grammar = GrammarState::resume(params, 0, NoteSet::default(), LastWord::Header, true);
        Ok(Self {
            params,
            header,
            tokens: Tokens::new(tokenizer, table),
            base_tick: 0,
            base: NotesAt::default(),
            events: Vec::new(),
            committed: Vec::new(),
            grammar,
            item: PartialItem::default(),
            end: NotesAt::default(),
        })
    }

    // ---- views -------------------------------------------------------------------------------

    pub fn params(&self) -> &LanguageParams {
        &self.params
    }

    pub fn grammar(&self) -> &GrammarState {
        &self.grammar
    }

    pub fn base_tick(&self) -> u64 {
        self.base_tick
    }

    pub fn base_sounding(&self) -> &NoteSet {
        &self.base.notes
    }

    pub fn header(&self) -> &[u32] {
        &self.header
    }

    pub fn tokens(&self) -> &[u32] {
        self.tokens.ids()
    }

    pub fn text(&self) -> &[u8] {
        self.tokens.text()
    }

    /// Byte end of each body token in the text.
    pub fn ends(&self) -> &[usize] {
        self.tokens.ends()
    }

    /// The text of the word being written (after the last space).
    pub fn current_word(&self) -> &[u8] {
        let text = self.tokens.text();
        match text.iter().rposition(|b| *b == b' ') {
            Some(i) => &text[i + 1..],
            None => text,
        }
    }

    pub fn events(&self) -> &[CtxEvent] {
        &self.events
    }

    pub fn committed(&self) -> &[NoteEvent] {
        &self.committed
    }

    /// `header ++ body` tokens.
    pub fn len(&self) -> usize {
        self.header.len() + self.tokens.ids().len()
    }

    /// The tokens at positions `from..to` of `header ++ body`.
    pub fn ids(&self, from: usize, to: usize) -> Vec<u32> {
        let h = self.header.len();
        (from..to)
            .map(|i| {
                if i < h {
                    self.header[i]
                } else {
                    self.tokens.ids()[i - h]
                }
            })
            .collect()
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
        for (p, on) in self.end.on_tick.iter().enumerate() {
            if let Some(on) = on {
                let rel = (on.saturating_add(max_note_ticks)).saturating_sub(self.base_tick);
                d.set(p as u8, rel);
            }
        }
        d
    }

    // ---- model tokens ------------------------------------------------------------------------

    /// Append one model token (its text must continue the body); returns the channel-0 events it
    /// completed (absolute ticks, tentative).
    pub fn push_token(&mut self, id: u32) -> Result<Vec<NoteEvent>> {
        let bytes = self.tokens.bytes_of(id).to_vec();
        ensure!(!bytes.is_empty(), "token {id} has no text");
        let (mut g, mut item) = (self.grammar, self.item);
        let mut done = Vec::new();
        for &b in &bytes {
            match item.read(&mut g, b) {
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
        (self.grammar, self.item) = (g, item);
        self.tokens.push(id);
        for e in &done {
            self.end.note(e);
            self.events.push(CtxEvent {
                event: *e,
                human: false,
                released: false,
            });
        }
        Ok(done)
    }

    /// Tokenize body text (which starts at a word start) and check its bytes round-trip.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokens.encode(text)
    }

    // ---- release -----------------------------------------------------------------------------

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

    // ---- human events: the prefix cut -------------------------------------------------------

    /// Insert human events (checked by the caller): cut the tentative model events at or after
    /// the earliest of them, re-serialize, keep the longest token prefix that still holds.
    /// Returns the edit and how many tentative events were cut.
    pub fn insert_human(&mut self, evs: &[NoteEvent], t: u64) -> Result<(Edit, usize)> {
        let before = self.events.len();
        self.events
            .retain(|e| e.human || e.released || e.event.tick < t);
        let cut = before - self.events.len();
        self.events.extend(evs.iter().map(|&event| CtxEvent {
            event,
            human: true,
            released: true,
        }));
        self.events.sort_by_key(|e| e.event);
        let new_text = self.serialize();
        Ok((self.replace_text(new_text)?, cut))
    }

    /// Drop the time words after the last event; None if there are none.
    pub fn drop_trailing_time(&mut self) -> Result<Option<Edit>> {
        let new_text = self.serialize();
        if new_text == self.tokens.text() {
            return Ok(None);
        }
        self.replace_text(new_text).map(Some)
    }

    /// The canonical body text of the event list.
    fn serialize(&self) -> Vec<u8> {
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
    fn replace_text(&mut self, new_text: Vec<u8>) -> Result<Edit> {
        let edit = self.tokens.replace(new_text)?;
        self.rebuild_state()?;
        Ok(edit)
    }

    /// Recompute the grammar state, the item being read and the channel-0 on-ticks from the base.
    fn rebuild_state(&mut self) -> Result<()> {
        let mut g = GrammarState::resume(self.params, 0, self.base.notes, LastWord::Header, true);
        let mut item = PartialItem::default();
        let text = self.tokens.text();
        for (i, &b) in text.iter().enumerate() {
            if item.read(&mut g, b).is_err() {
                bail!(
                    "internal: the context body is not valid event text at byte {i}: {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        }
        (self.grammar, self.item) = (g, item);
        self.end = self.base;
        for e in &self.events {
            self.end.note(&e.event);
        }
        Ok(())
    }

    // ---- flush cuts --------------------------------------------------------------------------

    /// The tick of the first model event not released yet.
    pub fn first_unreleased(&self) -> Option<u64> {
        self.events
            .iter()
            .find(|e| !e.released)
            .map(|e| e.event.tick)
    }

    /// Drop the body before `cut` and rebase its ticks: the notes sounding there become the
    /// starting state, and the tentative events before it are committed.
    pub fn rebase(&mut self, cut: Cut) -> Result<()> {
        for e in self.events.iter().filter(|e| e.event.tick < cut.tick) {
            self.base.note(&e.event);
        }
        let cut_off = self
            .events
            .iter()
            .filter(|e| e.event.tick < cut.tick && !e.released)
            .map(|e| e.event);
        self.committed.extend(cut_off);
        self.committed.sort();
        self.events.retain(|e| e.event.tick >= cut.tick);
        self.tokens.drain_to(cut);
        self.base_tick = cut.tick;
        self.rebuild_state()
    }
}
