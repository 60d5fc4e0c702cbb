//! The sampling mask and the sampler.
//!
//! Each token's text is computed once ([`TokenTable`]): the id decoded alone with the tokenizer's
//! ByteLevel decoder. The tokens are arranged in a byte trie ([`VocabTrie`]) so one mask is a
//! depth-first walk that feeds each byte once for all the tokens sharing it, and drops a whole
//! subtree as soon as its prefix is refused.
//!
//! A token is allowed iff the event grammar ([`GrammarState`], with new items restricted to
//! channel 0) accepts its bytes after the context, and the engine's [`Policy`] still holds:
//!
//! - at most `max_polyphony` channel-0 notes sound (a `0+` item is refused at the cap);
//! - no channel-0 note sounds longer than `max_note_ticks`: once a note is due, time may not pass
//!   its deadline, and at the deadline only text that writes its note-off is allowed (the
//!   grammar's sort order decides what can still come before it in the instant).
//!
//! Both rules are prefix-closed (a refused prefix cannot be rescued by more bytes), which is what
//! lets the walk prune. If the context itself is already past a deadline (a human instant took the
//! tick at which the off could have been written), the deadline moves to the first tick at which
//! the off can be written, so a mask is never empty by construction; should it be empty anyway,
//! the session falls back to a forced word ([`fallback_text`]).
//!
//! Sampling: temperature, then top-p (nucleus) over the allowed tokens, with a seeded ChaCha RNG
//! so a seed gives one sequence.

use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

use crate::events::{GrammarState, LastWord};

/// The channel the model writes.
pub const MODEL_CHANNEL_MASK: u16 = 1;

/// Every token's text, once.
#[derive(Debug, Clone)]
pub struct TokenTable {
    bytes: Vec<Vec<u8>>,
    /// Special (added) tokens: metadata words, pad, end. Never sampled.
    special: Vec<bool>,
}

impl TokenTable {
    /// Decode each id alone. `vocab_size` is the model's vocabulary (ids past the tokenizer's
    /// are given no text and never sampled).
    pub fn from_tokenizer(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Self> {
        let specials = tokenizer.get_added_tokens_decoder();
        let mut bytes = Vec::with_capacity(vocab_size);
        let mut special = Vec::with_capacity(vocab_size);
        let known = tokenizer.get_vocab_size(true);
        for id in 0..vocab_size {
            let id32 = u32::try_from(id).context("vocabulary too large")?;
            if id >= known {
                bytes.push(Vec::new());
                special.push(true);
                continue;
            }
            let is_special = specials.get(&id32).is_some_and(|t| t.special);
            let text = tokenizer
                .decode(&[id32], false)
                .map_err(|e| anyhow::anyhow!("decoding token {id} alone: {e}"))?;
            bytes.push(text.into_bytes());
            special.push(is_special);
        }
        Ok(Self { bytes, special })
    }

    /// The text of `id` (empty for ids past the tokenizer's vocabulary).
    pub fn bytes(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(true)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The concatenated text of `ids`.
    pub fn text_of(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.bytes(id));
        }
        out
    }
}

/// The sampleable tokens in a byte trie.
#[derive(Debug, Clone)]
pub struct VocabTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// (byte, child index), sorted by byte.
    children: Vec<(u8, u32)>,
    /// Tokens whose text ends here (several ids may share a text).
    tokens: Vec<u32>,
}

impl VocabTrie {
    /// Every non-special token with a non-empty text.
    pub fn new(table: &TokenTable) -> Self {
        let mut nodes = vec![TrieNode::default()];
        for id in 0..table.len() as u32 {
            let b = table.bytes(id);
            if table.is_special(id) || b.is_empty() {
                continue;
            }
            let mut at = 0usize;
            for &byte in b {
                let next = match nodes[at].children.binary_search_by_key(&byte, |c| c.0) {
                    Ok(i) => nodes[at].children[i].1 as usize,
                    Err(i) => {
                        let new = nodes.len();
                        nodes.push(TrieNode::default());
                        nodes[at].children.insert(i, (byte, new as u32));
                        new
                    }
                };
                at = next;
            }
            nodes[at].tokens.push(id);
        }
        Self { nodes }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The engine's limits on what the model may play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Longest channel-0 note, in ticks.
    pub max_note_ticks: u64,
    /// Most channel-0 notes sounding at once.
    pub max_polyphony: u32,
}

/// The grammar state plus what the policy needs to know about the partial item being written.
#[derive(Debug, Clone, Copy)]
pub struct MaskState {
    pub grammar: GrammarState,
    /// Bytes of the item being written (an item is at most 6 bytes).
    partial: [u8; 6],
    plen: u8,
    /// Channel-0 pitches struck since this state was made (their deadline restarts).
    renewed: u128,
    /// No channel-0 note-on before this tick (the grammar's ticks, from the context's base).
    earliest_on: u64,
    /// No new instant word before this tick, and no time word that forces one there.
    earliest_instant: u64,
    /// The item being written was begun by the context's text, before this state: it may always
    /// be finished (the bound above can move on between two tokens).
    item_from_context: bool,
}

impl MaskState {
    /// `grammar` is the context's state (its channel filter is set to channel 0 here);
    /// `current_word` is the text of the word being written (after its last space), used to
    /// recover the partial item.
    pub fn new(mut grammar: GrammarState, current_word: &[u8]) -> Self {
        grammar.set_channel_filter(MODEL_CHANNEL_MASK);
        let mut s = MaskState {
            grammar,
            partial: [0; 6],
            plen: 0,
            renewed: 0,
            earliest_on: 0,
            earliest_instant: 0,
            item_from_context: false,
        };
        if grammar.in_item() {
            // Items are fixed width: 5 bytes (`0-060`) or 6 (`0+060e`).
            let mut i = 0;
            while i < current_word.len() {
                let width = if current_word.get(i + 1) == Some(&b'+') {
                    6
                } else {
                    5
                };
                if i + width > current_word.len() {
                    let rest = &current_word[i..];
                    s.partial[..rest.len()].copy_from_slice(rest);
                    s.plen = rest.len() as u8;
                    s.item_from_context = s.plen > 0;
                    break;
                }
                i += width;
            }
        }
        s
    }

    /// Let the grammar accept the band's items too (channels 1–15, under the grammar alone; the
    /// policy still holds for channel 0): for imagining a whole instant (see the session).
    pub fn with_band(mut self) -> Self {
        self.grammar.set_channel_filter(0xFFFF);
        self
    }

    /// Whether `bytes` open an instant word from this state (a lone space does not).
    pub fn opens_instant(&self, bytes: &[u8]) -> bool {
        !self.grammar.in_instant() && self.grammar.after(bytes).is_some_and(|g| g.in_instant())
    }

    /// Refuse channel-0 note-ons before `tick` (relative to the context's base): a note the
    /// model would strike there is already due (or past) when it is sampled — after a prefix cut
    /// the model resumes at the musician's tick, behind "now" — so it waits instead of going out
    /// late. Note-offs stay allowed: a note must always be able to end.
    pub fn with_earliest_on(mut self, tick: u64) -> Self {
        self.earliest_on = tick;
        self
    }

    /// Refuse to open an instant word before `tick` (relative to the context's base), to add an
    /// item to one, and time words after which one would have to open there: whatever the model
    /// writes there is already late when it is sampled.
    pub fn with_earliest_instant(mut self, tick: u64) -> Self {
        self.earliest_instant = tick;
        self
    }

    /// The tick of the instant the next word would open, if the next word may be an instant
    /// (right after a time word, or at the start): the model plays there, or leaves it to the
    /// band.
    pub fn instant_start(&self) -> Option<u64> {
        let g = &self.grammar;
        if g.in_time_word() {
            // A token that starts with a space ends the time word here.
            return g.pending_time().map(|_| g.tick_if_word_ends());
        }
        if !(g.needs_space() || g.at_word_start()) {
            return None;
        }
        match g.last_word() {
            LastWord::Instant => None,
            LastWord::Header | LastWord::MaxGrid | LastWord::Grid | LastWord::Offset => {
                Some(g.tick())
            }
        }
    }

    /// The latest tick at which the next instant can open given the time words written so far
    /// and the channel-0 deadlines (time may not pass one); `None` inside an instant
    /// ([`GrammarState::latest_instant`]).
    pub fn latest_instant(&self, policy: &Policy, deadlines: &Deadlines) -> Option<u64> {
        let mut limit = u64::MAX;
        let mut bits = self.grammar.sounding().channel(0);
        while bits != 0 {
            let p = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            limit = limit.min(self.deadline(p, policy, deadlines));
        }
        self.grammar.latest_instant(limit)
    }

    fn partial(&self) -> &[u8] {
        &self.partial[..usize::from(self.plen)]
    }

    /// Whether the item being written is a note-on (`0+…`).
    fn partial_is_on(&self) -> bool {
        self.plen >= 2 && self.partial[1] == b'+'
    }

    /// Feed one byte through the grammar and the item tracker.
    fn step(&mut self, b: u8, policy: &Policy) -> bool {
        let was_in_item = self.grammar.in_item();
        let was_in_instant = self.grammar.in_instant();
        if self.grammar.feed(&[b]).is_err() {
            return false;
        }
        if !was_in_instant
            && self.grammar.in_instant()
            && self.grammar.tick() < self.earliest_instant
        {
            return false;
        }
        if self.grammar.in_item() {
            if self.plen == 0 && self.grammar.tick() < self.earliest_instant {
                return false; // a new item in an instant that is already past
            }
            if usize::from(self.plen) < self.partial.len() {
                self.partial[usize::from(self.plen)] = b;
                self.plen += 1;
            }
            if self.plen == 2 && b == b'+' && self.partial[0] == b'0' {
                let sounding = self.grammar.sounding().channel(0).count_ones();
                let early = !self.item_from_context && self.grammar.tick() < self.earliest_on;
                if sounding >= policy.max_polyphony || early {
                    return false;
                }
            }
        } else if was_in_item {
            // The byte completed an item.
            if self.partial_is_on() && self.plen == 5 && self.partial[0] == b'0' {
                if let Some(p) = pitch_of(&self.partial[2..5]) {
                    self.renewed |= 1u128 << p;
                }
            }
            self.plen = 0;
            self.item_from_context = false;
        }
        true
    }

    /// Whether these bytes are accepted, with the policy (a copy is fed).
    pub fn accepts(&self, bytes: &[u8], policy: &Policy, deadlines: &Deadlines) -> bool {
        self.after(bytes, policy, deadlines).is_some()
    }

    /// The state after these bytes, if they are accepted with the policy.
    pub fn after(&self, bytes: &[u8], policy: &Policy, deadlines: &Deadlines) -> Option<Self> {
        let mut s = *self;
        for &b in bytes {
            if !s.step(b, policy) || !s.viable(policy, deadlines) {
                return None;
            }
        }
        Some(s)
    }

    /// The earliest tick this state's text can reach: the instant's tick, or the tick after the
    /// time word being written in its shortest form.
    fn min_tick(&self) -> u64 {
        let g = &self.grammar;
        if g.in_time_word() {
            g.tick()
                .saturating_add(u64::from(g.pending_time().unwrap_or(1)))
        } else {
            g.tick()
        }
    }

    /// The deadline of channel-0 pitch `p` as seen from this state.
    fn deadline(&self, p: u8, policy: &Policy, deadlines: &Deadlines) -> u64 {
        if self.renewed >> p & 1 == 1 {
            return self.grammar.tick().saturating_add(policy.max_note_ticks);
        }
        match deadlines.of(p) {
            Some(d) => d,
            None => self.grammar.tick().saturating_add(policy.max_note_ticks),
        }
    }

    /// The policy's deadline rule: no channel-0 note past its deadline, and the notes due exactly
    /// now can still all be closed at this tick.
    fn viable(&self, policy: &Policy, deadlines: &Deadlines) -> bool {
        if self.earliest_instant > 0
            && self
                .latest_instant(policy, deadlines)
                .is_some_and(|latest| latest < self.earliest_instant)
        {
            return false;
        }
        if self.plen == 1 && self.grammar.in_item() && self.partial[0] == b'0' {
            // A new item's channel digit: it must still be able to become a note-off, or a
            // note-on under the polyphony cap (after a note-on only note-ons may follow).
            let g = &self.grammar;
            let can_on =
                g.sounding().channel(0).count_ones() < policy.max_polyphony && g.accepts(b"+");
            if !can_on && !g.accepts(b"-") {
                return false;
            }
        }
        let t = self.min_tick();
        let mut due: u128 = 0;
        let mut bits = self.grammar.sounding().channel(0);
        while bits != 0 {
            let p = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            let d = self.deadline(p, policy, deadlines);
            if d < t {
                return false;
            }
            if d == t {
                due |= 1u128 << p;
            }
        }
        due == 0 || self.can_close_now(due)
    }

    /// Whether every pitch in `due` can get its channel-0 note-off at the current min tick.
    fn can_close_now(&self, due: u128) -> bool {
        let g = &self.grammar;
        let closure = closure_text(due);
        if g.in_time_word() {
            // End the time word in its shortest form (`P` or `P_` become `P_1`), then the off.
            let ends: &[&[u8]] = if g.pending_time().is_some() {
                &[b" "]
            } else {
                &[b"_1 ", b"1 "]
            };
            return ends.iter().any(|end| {
                let mut text = end.to_vec();
                text.extend_from_slice(&closure);
                g.accepts(&text)
            });
        }
        if g.needs_space() {
            // Right after a header or a complete word: a new word follows the space.
            if g.last_word() == crate::events::LastWord::Instant {
                return false;
            }
            let mut text = vec![b' '];
            text.extend_from_slice(&closure);
            return g.accepts(&text);
        }
        if g.at_word_start() {
            return g.last_word() != crate::events::LastWord::Instant && g.accepts(&closure);
        }
        if !g.in_item() {
            return g.accepts(&closure);
        }
        // Mid-item: complete the partial item to some sounding pitch, then close the rest.
        if self.partial_is_on() {
            return false; // note-offs sort before note-ons
        }
        let partial = self.partial();
        let sounding = g.sounding().channel(0);
        (0..128u8).filter(|p| sounding >> p & 1 == 1).any(|p| {
            let item = off_item(p);
            if !item.starts_with(partial) {
                return false;
            }
            let mut text = item[partial.len()..].to_vec();
            text.extend_from_slice(&closure_text(due & !(1u128 << p)));
            g.accepts(&text)
        })
    }
}

fn off_item(p: u8) -> [u8; 5] {
    [
        b'0',
        b'-',
        b'0' + p / 100,
        b'0' + (p / 10) % 10,
        b'0' + p % 10,
    ]
}

fn closure_text(pitches: u128) -> Vec<u8> {
    let mut out = Vec::new();
    for p in 0..128u8 {
        if pitches >> p & 1 == 1 {
            out.extend_from_slice(&off_item(p));
        }
    }
    out
}

fn pitch_of(d: &[u8]) -> Option<u8> {
    if d.len() != 3 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = d.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
    u8::try_from(v).ok().filter(|p| *p < 128)
}

/// The deadline (in the grammar's ticks) of each sounding channel-0 note.
#[derive(Debug, Clone)]
pub struct Deadlines {
    tick: [Option<u64>; 128],
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { tick: [None; 128] }
    }
}

impl Deadlines {
    pub fn set(&mut self, pitch: u8, tick: u64) {
        if let Some(slot) = self.tick.get_mut(usize::from(pitch)) {
            *slot = Some(tick);
        }
    }

    pub fn of(&self, pitch: u8) -> Option<u64> {
        self.tick.get(usize::from(pitch)).copied().flatten()
    }

    /// The earliest deadline among `pitches` (a channel-0 sounding set).
    pub fn earliest(&self, pitches: u128) -> Option<u64> {
        (0..128u8)
            .filter(|p| pitches >> p & 1 == 1)
            .filter_map(|p| self.of(p))
            .min()
    }

    /// Make `state` viable by moving deadlines it has already missed to the first tick at which
    /// the notes can still be closed (this tick, or the next one when the instant being written
    /// has passed their place). Returns how many deadlines moved.
    pub fn relax_for(&mut self, state: &MaskState, policy: &Policy) -> usize {
        let t = state.min_tick();
        let mut due: u128 = 0;
        let mut bits = state.grammar.sounding().channel(0);
        while bits != 0 {
            let p = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            let d = state.deadline(p, policy, self);
            if d <= t {
                due |= 1u128 << p;
            }
        }
        if due == 0 {
            return 0;
        }
        let to = if state.can_close_now(due) { t } else { t + 1 };
        let mut moved = 0;
        for p in 0..128u8 {
            if due >> p & 1 == 1 && self.of(p) != Some(to) {
                self.set(p, to);
                moved += 1;
            }
        }
        moved
    }
}

/// The allowed tokens after `state` (sorted ids).
pub fn allowed_tokens(
    trie: &VocabTrie,
    state: &MaskState,
    policy: &Policy,
    deadlines: &Deadlines,
    out: &mut Vec<u32>,
) {
    out.clear();
    let mut stack: Vec<(u32, MaskState)> = Vec::with_capacity(64);
    stack.push((0, *state));
    while let Some((node, s)) = stack.pop() {
        let n = &trie.nodes[node as usize];
        for &(byte, child) in &n.children {
            let mut c = s;
            if !c.step(byte, policy) || !c.viable(policy, deadlines) {
                continue;
            }
            out.extend_from_slice(&trie.nodes[child as usize].tokens);
            if !trie.nodes[child as usize].children.is_empty() {
                stack.push((child, c));
            }
        }
    }
    out.sort_unstable();
}

/// The allowed tokens under the grammar alone (no policy): the first fallback.
pub fn grammar_only_tokens(trie: &VocabTrie, state: &MaskState, out: &mut Vec<u32>) {
    let state = &state.with_earliest_on(0).with_earliest_instant(0);
    let loose = Policy {
        max_note_ticks: u64::MAX / 4,
        max_polyphony: 128,
    };
    allowed_tokens(trie, state, &loose, &Deadlines::default(), out);
}

/// A forced continuation when no token is allowed: text the grammar accepts that ends the current
/// word and moves time on by one tick (closing due notes where it can). `None` only if the state
/// cannot be continued at all.
pub fn fallback_text(state: &MaskState) -> Option<Vec<u8>> {
    let g = &state.grammar;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    let closure = closure_text(g.sounding().channel(0));
    if g.at_word_start() {
        if !closure.is_empty() {
            candidates.push(closure.clone());
        }
        candidates.push(b"P_1".to_vec());
    }
    candidates.push(b" P_1".to_vec());
    if !closure.is_empty() {
        let mut c = b" ".to_vec();
        c.extend_from_slice(&closure);
        candidates.push(c);
    }
    candidates.into_iter().find(|c| g.accepts(c))
}

/// Temperature and nucleus sampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (the most likely allowed token).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (0 < top_p ≤ 1).
    pub top_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 0.95,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!("temperature must be a number ≥ 0, got {}", self.temperature);
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            bail!("top-p must be in (0, 1], got {}", self.top_p);
        }
        Ok(())
    }
}

/// Seeded sampling over an allowed set.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    scratch: Vec<(u32, f64)>,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scratch: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// One token from `allowed` (non-empty) by `logits`. `None` if `allowed` is empty.
    pub fn sample(&mut self, logits: &[f32], allowed: &[u32]) -> Option<u32> {
        let logit = |id: u32| -> f64 {
            let l = logits
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY);
            if l.is_nan() {
                f64::NEG_INFINITY
            } else {
                f64::from(l)
            }
        };
        let first = *allowed.first()?;
        if self.params.temperature == 0.0 {
            let mut best = first;
            for &id in allowed {
                if logit(id) > logit(best) {
                    best = id;
                }
            }
            return Some(best);
        }
        let t = f64::from(self.params.temperature);
        let max = allowed
            .iter()
            .map(|&id| logit(id))
            .fold(f64::NEG_INFINITY, f64::max);
        self.scratch.clear();
        if max == f64::NEG_INFINITY {
            // Nothing has a finite logit: uniform over the allowed set.
            let w = 1.0 / allowed.len() as f64;
            self.scratch.extend(allowed.iter().map(|&id| (id, w)));
        } else {
            let mut sum = 0.0;
            for &id in allowed {
                let w = ((logit(id) - max) / t).exp();
                sum += w;
                self.scratch.push((id, w));
            }
            for e in &mut self.scratch {
                e.1 /= sum;
            }
        }
        // Most likely first; ties by id, so the order never depends on the input order.
        self.scratch
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_p = f64::from(self.params.top_p);
        let mut kept = 0;
        let mut mass = 0.0;
        for e in &self.scratch {
            kept += 1;
            mass += e.1;
            if mass >= top_p {
                break;
            }
        }
        let u: f64 = self.rng.random::<f64>() * mass;
        let mut acc = 0.0;
        for e in &self.scratch[..kept] {
            acc += e.1;
            if u < acc {
                return Some(e.0);
            }
        }
        Some(self.scratch[kept - 1].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Grammar, LanguageParams};

    fn policy() -> Policy {
        Policy {
            max_note_ticks: 48,
            max_polyphony: 2,
        }
    }

    fn state(text: &[u8]) -> MaskState {
        let mut g = Grammar::new(LanguageParams::default()).start();
        g.feed(text).unwrap();
        let word = text.rsplit(|b| *b == b' ').next().unwrap_or(&[]);
        MaskState::new(g, word)
    }

    #[test]
    fn polyphony_cap_refuses_a_third_note() {
        let s = state(b"0+060e0+064e");
        let d = Deadlines::default();
        assert!(!s.accepts(b"0+067e", &policy(), &d));
        assert!(!s.accepts(b"0+", &policy(), &d));
        assert!(s.accepts(b" P_12 0-0600+067e", &policy(), &d));
        let s = state(b"0+060e0+06");
        assert!(s.accepts(b"4e", &policy(), &d));
        // After a note-on only note-ons may follow in the instant: at the cap, no new item.
        let s = state(b"0+060e0+064e");
        assert!(!s.accepts(b"0", &policy(), &d));
        let s = state(b"0+060e0+064e P_1 ");
        assert!(s.accepts(b"0", &policy(), &d)); // 0-060 or 0-064
        assert!(!s.accepts(b"0+", &policy(), &d));
    }

    #[test]
    fn no_note_on_before_the_earliest_tick() {
        let d = Deadlines::default();
        // The model is at tick 12 (a musician's instant it resumed at after a prefix cut).
        let s = state(b"0+060e P_12 1+040e").with_earliest_on(14);
        assert!(!s.accepts(b"0+062e", &policy(), &d)); // into the musician's instant: too early
        assert!(!s.accepts(b" P_1 0+062e", &policy(), &d)); // tick 13: still too early
        assert!(s.accepts(b" P_2 0+062e", &policy(), &d)); // tick 14: on time
        assert!(s.accepts(b" P_1 0-060", &policy(), &d)); // a note can always end
                                                          // A note-on the context already began (`0` after a note-on, so only `0+` can follow) is
                                                          // finished even if "now" moved past its tick meanwhile: the bound never strands an item.
        let s = state(b"0+060e P_12 0-0600+038h0").with_earliest_on(14);
        assert!(s.accepts(b"+040a", &policy(), &d));
        let s = state(b"0+060e P_12 0-0600+038h").with_earliest_on(14);
        assert!(!s.accepts(b"0+040a", &policy(), &d)); // a note-on begun now is refused
                                                       // Without the bound the early strike is fine.
        let s = state(b"0+060e P_12 1+040e");
        assert!(s.accepts(b" P_1 0+062e", &policy(), &d));
    }

    #[test]
    fn no_instant_before_the_earliest_tick() {
        let d = Deadlines::default();
        let p = policy();
        // At tick 12 after the musician's instant; nothing may open before tick 20.
        let s = state(b"0+060e P_12 1+040e").with_earliest_instant(20);
        assert!(!s.accepts(b" P_1 0-060", &p, &d)); // an instant at 13: in the past
        assert!(s.accepts(b" P_12 0-060", &p, &d)); // at 24
        assert!(!s.accepts(b" P_6 ", &p, &d)); // an offset word forces an instant at 18
        assert!(s.accepts(b" P_8 ", &p, &d)); // at 20: on time
        assert!(s.accepts(b" P_12", &p, &d)); // a grid word may still take an offset
                                              // A smaller grid word whose largest offset cannot reach the bound is a dead end.
        let s = state(b"0+060e P_12 0-0601+040e").with_earliest_instant(40);
        assert!(!s.accepts(b" P_12 ", &p, &d)); // 24 + 11 < 40
        assert!(s.accepts(b" P_24 ", &p, &d)); // 36 + 11 ≥ 40
        assert!(s.accepts(b" P_96 ", &p, &d)); // the bar word can be followed by more time
                                               // Nor a new item in an instant that is past (an item the context began may end).
        let s = state(b"0+060e P_12 0-060").with_earliest_instant(20);
        assert!(!s.accepts(b"0", &p, &d) && s.accepts(b" P_8 ", &p, &d));
        let s = state(b"0+060e P_12 0-0600+0").with_earliest_instant(20);
        assert!(s.accepts(b"62e", &p, &d));
    }

    #[test]
    fn the_instant_about_to_open_and_how_far_time_words_reach() {
        let (p, d) = (policy(), Deadlines::default());
        let reach = |s: &MaskState| s.latest_instant(&p, &d);
        // C4 (struck at 0) must end by 48: time can reach no further.
        let s = state(b"0+060e P_12 ");
        assert_eq!((s.instant_start(), reach(&s)), (Some(12), Some(23)));
        let s = state(b"0+060e P_12 P_3 ");
        assert_eq!((s.instant_start(), reach(&s)), (Some(15), Some(15)));
        // Inside a time word: the instant opens where the word would end (a space next); more
        // digits may still move it (P_1 → P_12: 12 + 11), and P_9 may still become the bar word.
        let s = state(b"0+060e P_12");
        assert_eq!((s.instant_start(), reach(&s)), (Some(12), Some(23)));
        let s = state(b"0+060e P_1");
        assert_eq!((s.instant_start(), reach(&s)), (Some(1), Some(23)));
        let s = state(b"0+060e P_3");
        assert_eq!((s.instant_start(), reach(&s)), (Some(3), Some(47)));
        let s = state(b"0+060e P_9");
        assert_eq!((s.instant_start(), reach(&s)), (Some(9), Some(9))); // P_96 passes 48
        let s = state(b"0+060e P_12 P_");
        assert_eq!(reach(&s), Some(23)); // only an offset word can follow P_12
                                         // With nothing sounding on channel 0, the bar word leaves time unbounded.
        let s = state(b"1+060e P_9");
        assert_eq!((s.instant_start(), reach(&s)), (Some(9), Some(u64::MAX)));
        let s = state(b"0+060e");
        assert_eq!((s.instant_start(), reach(&s)), (None, None));
        let s = state(b"0+060e P_");
        assert_eq!(s.instant_start(), None); // no complete time word yet
    }

    #[test]
    fn with_the_band_its_items_are_accepted_and_the_policy_still_holds_for_channel_0() {
        let (p, d) = (policy(), Deadlines::default());
        let s = state(b"0+060e1+052c P_12 ");
        assert!(!s.accepts(b"1-052", &p, &d)); // channel 0 only
        let s = s.with_band();
        assert!(s.accepts(b"1-0520+062e2+040a", &p, &d));
        assert!(s.accepts(b"0-0601-052", &p, &d));
        assert!(!s.accepts(b"1+052a", &p, &d)); // the grammar: 52 still sounds on channel 1
                                                // Polyphony counts channel 0 only: a third channel-0 note is refused, a band note is not.
        let s = state(b"0+060e0+064e1+050a P_12 ").with_band();
        assert!(!s.accepts(b"0+067e", &p, &d));
        assert!(s.accepts(b"2+067e3+070e", &p, &d));
        assert!(s.opens_instant(b"2+0") && !s.opens_instant(b"P_3") && !s.opens_instant(b""));
    }

    #[test]
    fn deadline_forces_the_off() {
        // C4 struck at tick 0, deadline 48.
        let mut d = Deadlines::default();
        d.set(60, 48);
        let s = state(b"0+060e P_24 0+062e ");
        let p = policy();
        assert!(s.accepts(b"P_24", &p, &d)); // reaches 48 exactly
        assert!(!s.accepts(b"P_36", &p, &d)); // passes 48
        assert!(!s.accepts(b"P_24 P_1", &p, &d));
        assert!(s.accepts(b"P_24 0-060", &p, &d));
        assert!(s.accepts(b"P_24 0-060 P_12", &p, &d));
        assert!(s.accepts(b"P_12 P_2 0-060", &p, &d)); // closing early is fine too
                                                       // At the deadline only an instant that writes the off may come.
        let s = state(b"0+060e P_48 ");
        assert!(!s.accepts(b"0+062e", &p, &d));
        assert!(!s.accepts(b"P", &p, &d));
        assert!(s.accepts(b"0-0600+062e", &p, &d));
        // A partial off for a higher pitch would pass 0-060's place.
        let s = state(b"0+060e0+070e P_48 0-07");
        let mut d2 = d.clone();
        d2.set(70, 200);
        assert!(!s.accepts(b"0", &p, &d2));
        let s = state(b"0+060e0+070e P_48 0-0");
        assert!(s.accepts(b"60", &p, &d2));
        assert!(!s.accepts(b"70", &p, &d2));
    }

    #[test]
    fn relax_moves_a_missed_deadline_to_the_next_tick() {
        // C4 due at 48, but the instant at 48 already holds a channel-1 item after its place.
        let mut g = GrammarState::from_events_prefix(
            LanguageParams::default(),
            &[
                crate::events::NoteEvent::on(0, 0, 60, 4),
                crate::events::NoteEvent::on(48, 1, 30, 1),
            ],
        );
        g.feed(b"").unwrap();
        let s = MaskState::new(g, b"");
        let mut d = Deadlines::default();
        d.set(60, 48);
        let p = policy();
        assert!(!s.accepts(b" P_1", &p, &d));
        assert_eq!(d.relax_for(&s, &p), 1);
        assert_eq!(d.of(60), Some(49));
        assert!(s.accepts(b" P_1 0-060", &p, &d));
        assert!(!s.accepts(b" P_2", &p, &d));
    }

    #[test]
    fn sampler_is_seeded_and_respects_the_mask() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let allowed: Vec<u32> = vec![3, 7, 11, 20, 41];
        let run = |seed| {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    top_p: 1.0,
                },
                seed,
            )
            .unwrap();
            (0..200)
                .map(|_| s.sample(&logits, &allowed).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        assert!(a.iter().all(|t| allowed.contains(t)));
        // Every allowed token shows up at temperature 1 and top-p 1.
        for t in &allowed {
            assert!(a.contains(t), "{t} never sampled");
        }
        let mut greedy = Sampler::new(
            SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
            },
            0,
        )
        .unwrap();
        let best = *allowed
            .iter()
            .max_by(|a, b| logits[**a as usize].total_cmp(&logits[**b as usize]))
            .unwrap();
        assert_eq!(greedy.sample(&logits, &allowed), Some(best));
        // A tiny top-p keeps only the most likely token.
        let mut nucleus = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1e-6,
            },
            1,
        )
        .unwrap();
        assert!((0..50).all(|_| nucleus.sample(&logits, &allowed) == Some(best)));
        assert_eq!(greedy.sample(&logits, &[]), None);
    }

    #[test]
    fn bad_sampling_params_are_refused() {
        assert!(Sampler::new(
            SamplingParams {
                temperature: -1.0,
                top_p: 0.9
            },
            0
        )
        .is_err());
        assert!(Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.0
            },
            0
        )
        .is_err());
        assert!(Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1.5
            },
            0
        )
        .is_err());
    }
}
