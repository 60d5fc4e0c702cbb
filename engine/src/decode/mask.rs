//! The sampling mask: a token is allowed iff the event grammar, with new items on channel 0,
//! accepts its bytes after the context and the engine's [`Policy`] still holds (polyphony, note
//! length by deadlines, nothing before "now"); both rules are prefix-closed, which lets the walk
//! of the vocabulary trie prune. Deadlines already missed are relaxed, and an empty mask falls
//! back to a forced word ([`fallback_text`]). docs/ENGINE.md "The mask".

use crate::events::item::{off_item, PartialItem};
use crate::events::{GrammarState, LastWord};

use super::vocab::VocabTrie;

/// The channel the model writes.
pub const MODEL_CHANNEL_MASK: u16 = 1;

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
    /// The item being written.
    partial: PartialItem,
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
            partial: PartialItem::default(),
            renewed: 0,
            earliest_on: 0,
            earliest_instant: 0,
            item_from_context: false,
        };
        if grammar.in_item() {
            s.partial = PartialItem::of_word(current_word);
            s.item_from_context = !s.partial.is_empty();
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
            if self.partial.is_empty() && self.grammar.tick() < self.earliest_instant {
                return false; // a new item in an instant that is already past
            }
            self.partial.push(b);
            if self.partial.len() == 2 && b == b'+' && self.partial.first_byte() == Some(b'0') {
                let sounding = self.grammar.sounding().channel(0).count_ones();
                let early = !self.item_from_context && self.grammar.tick() < self.earliest_on;
                if sounding >= policy.max_polyphony || early {
                    return false;
                }
            }
        } else if was_in_item {
            // The byte completed an item: a channel-0 note struck restarts its deadline.
            self.partial.push(b);
            if let Some(e) = self.partial.take(self.grammar.tick()) {
                if e.is_on() && e.channel == 0 {
                    self.renewed |= 1u128 << e.pitch;
                }
            }
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
        if self.partial.len() == 1
            && self.grammar.in_item()
            && self.partial.first_byte() == Some(b'0')
        {
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
            if g.last_word() == LastWord::Instant {
                return false;
            }
            let mut text = vec![b' '];
            text.extend_from_slice(&closure);
            return g.accepts(&text);
        }
        if g.at_word_start() {
            return g.last_word() != LastWord::Instant && g.accepts(&closure);
        }
        if !g.in_item() {
            return g.accepts(&closure);
        }
        // Mid-item: complete the partial item to some sounding pitch, then close the rest.
        if self.partial.is_on() {
            return false; // note-offs sort before note-ons
        }
        let partial = self.partial.bytes();
        let sounding = g.sounding().channel(0);
        (0..128u8).filter(|p| sounding >> p & 1 == 1).any(|p| {
            let item = off_item(0, p);
            if !item.starts_with(partial) {
                return false;
            }
            let mut text = item[partial.len()..].to_vec();
            text.extend_from_slice(&closure_text(due & !(1u128 << p)));
            g.accepts(&text)
        })
    }
}

/// The note-offs of channel-0 `pitches`, in the instant's order (ascending pitch).
fn closure_text(pitches: u128) -> Vec<u8> {
    let mut out = Vec::new();
    for p in 0..128u8 {
        if pitches >> p & 1 == 1 {
            out.extend_from_slice(&off_item(0, p));
        }
    }
    out
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

    /// Move the deadlines of channel-0 notes sounding in `state` that fall before `tick` (the
    /// first tick the model may still write at) to `tick`: a note held a few ticks past its
    /// longest length is better than a note-off sent late. Returns how many moved.
    pub fn defer_to(&mut self, state: &MaskState, policy: &Policy, tick: u64) -> usize {
        let mut moved = 0;
        let mut bits = state.grammar.sounding().channel(0);
        while bits != 0 {
            let p = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            if state.deadline(p, policy, self) < tick {
                self.set(p, tick);
                moved += 1;
            }
        }
        moved
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
    trie.walk(
        *state,
        |s, byte| s.step(byte, policy) && s.viable(policy, deadlines),
        out,
    );
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

#[cfg(test)]
mod tests;
