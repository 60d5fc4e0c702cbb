//! A byte-level acceptor for the body of a text (time and instant words), for the engine's
//! sampling mask.
//!
//! The model emits BPE tokens whose text may end inside a word, and a ByteLevel token may begin
//! with the space that ends the previous word. [`GrammarState::feed`] accepts exactly the byte
//! strings that keep the body a prefix of some valid body: partial words that can still
//! complete, canonical time sequences, strictly increasing items inside an instant, no note-off
//! for a note that is not sounding, no note-on for one that is, no empty instant, no two instants
//! without time between. A state is `Copy` (about 300 bytes) and `feed` never allocates.

use super::item::{hex_digit, NoteSet};
use super::stream::{time_class, time_may_follow, LastWord, StreamDecoder};
use super::{EventKind, LanguageParams, NoteEvent};

/// Where a rejected byte is: its offset in the bytes given to `feed`, and its value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub offset: usize,
    pub byte: u8,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "byte {} ({:?}) cannot continue the text",
            self.offset,
            char::from(self.byte)
        )
    }
}

impl std::error::Error for Reject {}

/// An item of an instant: (kind rank: 0 off / 1 on, channel, pitch).
pub type ItemKey = (u8, u8, u8);

/// The partial item being read inside an instant word.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Partial {
    /// At an item boundary.
    None,
    Channel {
        ch: u8,
    },
    Kind {
        ch: u8,
        on: bool,
    },
    /// `digits` pitch digits read, their value so far.
    Pitch {
        ch: u8,
        on: bool,
        digits: u8,
        value: u8,
    },
    /// A complete pitch of a note-on; the velocity letter is next.
    Velocity {
        ch: u8,
        pitch: u8,
    },
}

/// Where in the byte stream the state is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Pos {
    /// A word (or the header) just ended: a space must come next.
    Sep,
    /// After a space (or at the very start): a word must start.
    Boundary,
    /// `P` read.
    TimeP,
    /// `P_` read.
    TimeUnderscore,
    /// `P_` and digits read, worth `value`.
    TimeDigits { value: u32 },
    /// Inside an instant word with `items` complete items so far.
    Instant {
        items: u16,
        last: Option<ItemKey>,
        partial: Partial,
    },
}

/// The grammar of a body for given parameters: a factory of start states.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    params: LanguageParams,
}

impl Grammar {
    pub fn new(params: LanguageParams) -> Self {
        Grammar { params }
    }

    pub fn params(&self) -> &LanguageParams {
        &self.params
    }

    /// The start of a text with no header: the first byte starts a word.
    pub fn start(&self) -> GrammarState {
        GrammarState::new(self.params)
    }

    /// Right after a header (metadata words): a space comes first.
    pub fn after_header(&self) -> GrammarState {
        GrammarState::resume(self.params, 0, NoteSet::default(), LastWord::Header, true)
    }
}

/// The acceptor's state (see the module doc).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GrammarState {
    grid: u32,
    max_grid: u32,
    last_letter: u8,
    tick: u64,
    sounding: NoteSet,
    last: LastWord,
    pos: Pos,
    channel_filter: u16,
}

impl GrammarState {
    /// The start of a text with no header, at tick 0: the first byte starts a word.
    pub fn new(params: LanguageParams) -> Self {
        GrammarState {
            grid: params.grid(),
            max_grid: params.max_grid(),
            last_letter: params.last_velocity_letter(),
            tick: 0,
            sounding: NoteSet::default(),
            last: LastWord::Header,
            pos: Pos::Boundary,
            channel_filter: 0xFFFF,
        }
    }

    /// A state continuing a text that reached `tick` with `sounding` notes and whose last
    /// complete word was `last`. `need_space`: the text ends right after that word (true), or
    /// after the space that follows it (false).
    pub fn resume(
        params: LanguageParams,
        tick: u64,
        sounding: NoteSet,
        last: LastWord,
        need_space: bool,
    ) -> Self {
        GrammarState {
            tick,
            sounding,
            last,
            pos: if need_space { Pos::Sep } else { Pos::Boundary },
            ..GrammarState::new(params)
        }
    }

    /// The state after the words a decoder has read (`need_space` as in [`resume`](Self::resume)).
    pub fn from_decoder(decoder: &StreamDecoder, need_space: bool) -> Self {
        GrammarState::resume(
            *decoder.params(),
            decoder.tick(),
            *decoder.sounding(),
            decoder.last_word(),
            need_space,
        )
    }

    /// Built from decoded context events: `events` sorted, the text's last word an instant at
    /// the last event's tick (or the header when there are none); the text ends after it.
    pub fn from_events_prefix(params: LanguageParams, events: &[NoteEvent]) -> Self {
        let mut sounding = NoteSet::default();
        for e in events {
            match e.kind {
                EventKind::On { .. } => sounding.insert(e.channel, e.pitch),
                EventKind::Off => sounding.remove(e.channel, e.pitch),
            }
        }
        match events.last() {
            Some(e) => GrammarState::resume(params, e.tick, sounding, LastWord::Instant, true),
            None => GrammarState::resume(params, 0, sounding, LastWord::Header, true),
        }
    }

    /// Restrict the channels of new instant items to the set bits of `mask` (bit 0 = channel 0).
    pub fn set_channel_filter(&mut self, mask: u16) {
        self.channel_filter = mask;
    }

    pub fn channel_filter(&self) -> u16 {
        self.channel_filter
    }

    /// The grid unit in ticks (the largest offset word is one less).
    pub fn grid(&self) -> u32 {
        self.grid
    }

    /// The tick after every complete time word (a partial time word is not counted; see
    /// [`pending_time`](Self::pending_time)).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The value of the time word being read, if its digits so far form a complete word here.
    pub fn pending_time(&self) -> Option<u32> {
        match self.pos {
            Pos::TimeDigits { value } if self.time_word_ok(value) => Some(value),
            _ => None,
        }
    }

    /// The tick if the current word ended here: [`tick`](Self::tick) plus a complete partial
    /// time word.
    pub fn tick_if_word_ends(&self) -> u64 {
        self.tick
            .saturating_add(u64::from(self.pending_time().unwrap_or(0)))
    }

    /// Sounding notes, counting the complete items of the instant being read.
    pub fn sounding(&self) -> &NoteSet {
        &self.sounding
    }

    /// The last complete word before the current position (an instant being read is not yet
    /// counted).
    pub fn last_word(&self) -> LastWord {
        self.last
    }

    /// Whether the position is inside an instant word.
    pub fn in_instant(&self) -> bool {
        matches!(self.pos, Pos::Instant { .. })
    }

    /// Whether the position is inside a time word.
    pub fn in_time_word(&self) -> bool {
        matches!(
            self.pos,
            Pos::TimeP | Pos::TimeUnderscore | Pos::TimeDigits { .. }
        )
    }

    /// Whether the position is right after a space (a word must start).
    pub fn at_word_start(&self) -> bool {
        self.pos == Pos::Boundary
    }

    /// Whether a space must come next (a complete word, or the header, just ended).
    pub fn needs_space(&self) -> bool {
        self.pos == Pos::Sep
    }

    /// The last complete item of the instant being read: (kind rank 0 off / 1 on, channel, pitch).
    pub fn last_item(&self) -> Option<ItemKey> {
        match self.pos {
            Pos::Instant { last, .. } => last,
            _ => None,
        }
    }

    /// Complete items so far in the instant being read.
    pub fn instant_items(&self) -> u16 {
        match self.pos {
            Pos::Instant { items, .. } => items,
            _ => 0,
        }
    }

    /// Whether an item is partly read (the instant word cannot end here).
    pub fn in_item(&self) -> bool {
        matches!(self.pos, Pos::Instant { partial, .. } if partial != Partial::None)
    }

    /// Whether the word being read could end here (a space or the end of the text may follow).
    pub fn word_can_end(&self) -> bool {
        match self.pos {
            Pos::Sep => true,
            Pos::TimeDigits { value } => self.time_word_ok(value),
            Pos::Instant { items, partial, .. } => items > 0 && partial == Partial::None,
            _ => false,
        }
    }

    /// Whether the body so far is a complete body (it could end here).
    pub fn is_complete(&self) -> bool {
        self.word_can_end() || (self.pos == Pos::Boundary && self.last == LastWord::Header)
    }

    /// The state after `bytes`, or `None` if some byte cannot continue the body.
    pub fn after(&self, bytes: &[u8]) -> Option<GrammarState> {
        let mut s = *self;
        for &b in bytes {
            if !s.step(b) {
                return None;
            }
        }
        Some(s)
    }

    /// Feed bytes; on a rejected byte the state is left unchanged and the byte's offset returned.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Reject> {
        let mut s = *self;
        for (offset, &b) in bytes.iter().enumerate() {
            if !s.step(b) {
                return Err(Reject { offset, byte: b });
            }
        }
        *self = s;
        Ok(())
    }

    /// Whether `bytes` can continue the body from here (without changing the state).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        self.after(bytes).is_some()
    }

    /// The latest tick, at most `limit` (a deadline time may not pass), at which the next instant
    /// word can open given the time words read so far — a time word being read included,
    /// whatever digits may still come. `None` inside an instant (not a time position); `Some(0)`
    /// when no instant can open by `limit` at all.
    pub fn latest_instant(&self, limit: u64) -> Option<u64> {
        let grid = u64::from(self.grid);
        // The latest instant after a word of `n` ticks that follows the words before it.
        let after = |n: u64| -> Option<u64> {
            let at = self.tick + n;
            if at > limit {
                return None;
            }
            match time_class(n, &self.params_view())? {
                LastWord::MaxGrid => Some(limit),
                LastWord::Grid => Some((at + grid - 1).min(limit)),
                _ => Some(at),
            }
        };
        let reach = match self.pos {
            Pos::Instant { .. } => return None,
            Pos::Sep | Pos::Boundary => match self.last {
                LastWord::Offset => (self.tick <= limit).then_some(self.tick),
                LastWord::Grid => (self.tick <= limit).then(|| (self.tick + grid - 1).min(limit)),
                LastWord::Header | LastWord::MaxGrid => (self.tick <= limit).then_some(limit),
                LastWord::Instant => (self.tick < limit).then_some(limit),
            },
            Pos::TimeP | Pos::TimeUnderscore => match self.last {
                // Only an offset word can follow a smaller grid word.
                LastWord::Grid => (self.tick < limit).then(|| (self.tick + grid - 1).min(limit)),
                _ => (self.tick < limit).then_some(limit),
            },
            Pos::TimeDigits { value } => {
                // Every word these digits can still become (no time word has over 3 digits).
                let v = u64::from(value);
                std::iter::once(v)
                    .chain((0..10).map(|d| v * 10 + d))
                    .chain((0..100).map(|d| v * 100 + d))
                    .filter(|&n| n <= u64::from(self.max_grid) && self.time_word_ok(n as u32))
                    .filter_map(after)
                    .max()
            }
        };
        Some(reach.unwrap_or(0))
    }

    fn time_word_ok(&self, n: u32) -> bool {
        let params = self.params_view();
        time_class(u64::from(n), &params).is_some_and(|c| time_may_follow(self.last, c))
    }

    fn params_view(&self) -> LanguageParams {
        LanguageParams {
            ticks_per_quarter: self.grid * 2,
            velocity_bins: self.last_letter - b'a' + 1,
        }
    }

    /// Whether some allowed time word has a decimal form starting with the digits of `prefix`
    /// (`prefix == 0`: no digit yet).
    fn time_prefix_feasible(&self, prefix: u32) -> bool {
        let grid = u64::from(self.grid);
        let max = u64::from(self.max_grid);
        let (offsets, grids) = match self.last {
            LastWord::Header | LastWord::Instant | LastWord::MaxGrid => (true, true),
            LastWord::Grid => (true, false),
            LastWord::Offset => (false, false),
        };
        let hit = |lo: u64, hi: u64| {
            (offsets && lo.max(1) <= hi.min(grid.saturating_sub(1)))
                || (grids && {
                    let from = lo.max(grid);
                    let first = from.div_ceil(grid) * grid;
                    first <= hi.min(max)
                })
        };
        if prefix == 0 {
            return hit(1, max);
        }
        let mut scale: u64 = 1;
        loop {
            let lo = u64::from(prefix) * scale;
            if lo > max {
                return false;
            }
            if hit(lo, lo + scale - 1) {
                return true;
            }
            scale *= 10;
        }
    }

    /// Whether a new item of this instant can be (channel `ch` or any allowed, kind `on` or
    /// either, pitch in `lo..=hi`), given the last item and the sounding notes.
    fn item_feasible(
        &self,
        last: Option<ItemKey>,
        ch: Option<u8>,
        on: Option<bool>,
        lo: u8,
        hi: u8,
    ) -> bool {
        if lo > hi || hi > 127 {
            return false;
        }
        let range: u128 = if hi - lo == 127 {
            u128::MAX
        } else {
            ((1u128 << (hi - lo + 1)) - 1) << lo
        };
        let chans = match ch {
            Some(c) => c..=c,
            None => 0..=15,
        };
        for c in chans {
            if self.channel_filter >> c & 1 == 0 {
                continue;
            }
            for kind in 0..2u8 {
                if on.is_some_and(|o| u8::from(o) != kind) {
                    continue;
                }
                let mut mask = range;
                if let Some((lk, lc, lp)) = last {
                    if kind < lk || (kind == lk && c < lc) {
                        continue;
                    }
                    if kind == lk && c == lc {
                        // pitches strictly above lp
                        mask &= if lp >= 127 { 0 } else { u128::MAX << (lp + 1) };
                    }
                }
                let s = self.sounding.channel(c);
                mask &= if kind == 0 { s } else { !s };
                if mask != 0 {
                    return true;
                }
            }
        }
        false
    }

    /// One byte. Returns false (state possibly half-updated: callers work on a copy) if rejected.
    fn step(&mut self, b: u8) -> bool {
        match self.pos {
            Pos::Sep => {
                if b == b' ' {
                    self.pos = Pos::Boundary;
                    return true;
                }
                false
            }
            Pos::Boundary => match b {
                b'P' if self.time_prefix_feasible(0) => {
                    self.pos = Pos::TimeP;
                    true
                }
                b'0'..=b'9' | b'a'..=b'f' => {
                    let ch = hex_digit(b).unwrap_or(0);
                    if self.last == LastWord::Instant
                        || !self.item_feasible(None, Some(ch), None, 0, 127)
                    {
                        return false;
                    }
                    self.pos = Pos::Instant {
                        items: 0,
                        last: None,
                        partial: Partial::Channel { ch },
                    };
                    true
                }
                _ => false,
            },
            Pos::TimeP => {
                if b == b'_' {
                    self.pos = Pos::TimeUnderscore;
                    return true;
                }
                false
            }
            Pos::TimeUnderscore => {
                if (b'1'..=b'9').contains(&b) && self.time_prefix_feasible(u32::from(b - b'0')) {
                    self.pos = Pos::TimeDigits {
                        value: u32::from(b - b'0'),
                    };
                    return true;
                }
                false
            }
            Pos::TimeDigits { value } => {
                if b == b' ' {
                    if !self.time_word_ok(value) {
                        return false;
                    }
                    let params = self.params_view();
                    let Some(class) = time_class(u64::from(value), &params) else {
                        return false;
                    };
                    let Some(tick) = self.tick.checked_add(u64::from(value)) else {
                        return false;
                    };
                    self.tick = tick;
                    self.last = class;
                    self.pos = Pos::Boundary;
                    return true;
                }
                if !b.is_ascii_digit() || value > self.max_grid {
                    return false;
                }
                let next = value * 10 + u32::from(b - b'0');
                if !self.time_prefix_feasible(next) {
                    return false;
                }
                self.pos = Pos::TimeDigits { value: next };
                true
            }
            Pos::Instant {
                items,
                last,
                partial,
            } => self.step_instant(b, items, last, partial),
        }
    }

    fn step_instant(&mut self, b: u8, items: u16, last: Option<ItemKey>, partial: Partial) -> bool {
        let set = |s: &mut Self, items: u16, last: Option<ItemKey>, partial: Partial| {
            s.pos = Pos::Instant {
                items,
                last,
                partial,
            };
            true
        };
        match partial {
            Partial::None => match b {
                b' ' if items > 0 => {
                    self.last = LastWord::Instant;
                    self.pos = Pos::Boundary;
                    true
                }
                b'0'..=b'9' | b'a'..=b'f' => {
                    let ch = hex_digit(b).unwrap_or(0);
                    self.item_feasible(last, Some(ch), None, 0, 127)
                        && set(self, items, last, Partial::Channel { ch })
                }
                _ => false,
            },
            Partial::Channel { ch } => {
                let on = match b {
                    b'+' => true,
                    b'-' => false,
                    _ => return false,
                };
                self.item_feasible(last, Some(ch), Some(on), 0, 127)
                    && set(self, items, last, Partial::Kind { ch, on })
            }
            Partial::Kind { ch, on } => {
                let (lo, hi) = match b {
                    b'0' => (0, 99),
                    b'1' => (100, 127),
                    _ => return false,
                };
                self.item_feasible(last, Some(ch), Some(on), lo, hi)
                    && set(
                        self,
                        items,
                        last,
                        Partial::Pitch {
                            ch,
                            on,
                            digits: 1,
                            value: b - b'0',
                        },
                    )
            }
            Partial::Pitch {
                ch,
                on,
                digits,
                value,
            } => {
                if !b.is_ascii_digit() {
                    return false;
                }
                let v = u16::from(value) * 10 + u16::from(b - b'0');
                if digits == 1 {
                    let lo = v * 10;
                    if lo > 127 {
                        return false;
                    }
                    let hi = (lo + 9).min(127);
                    return self.item_feasible(last, Some(ch), Some(on), lo as u8, hi as u8)
                        && set(
                            self,
                            items,
                            last,
                            Partial::Pitch {
                                ch,
                                on,
                                digits: 2,
                                value: v as u8,
                            },
                        );
                }
                if v > 127 {
                    return false;
                }
                let pitch = v as u8;
                if !self.item_feasible(last, Some(ch), Some(on), pitch, pitch) {
                    return false;
                }
                if on {
                    set(self, items, last, Partial::Velocity { ch, pitch })
                } else {
                    self.sounding.remove(ch, pitch);
                    set(
                        self,
                        items.saturating_add(1),
                        Some((0, ch, pitch)),
                        Partial::None,
                    )
                }
            }
            Partial::Velocity { ch, pitch } => {
                if !(b'a'..=self.last_letter).contains(&b) {
                    return false;
                }
                self.sounding.insert(ch, pitch);
                set(
                    self,
                    items.saturating_add(1),
                    Some((1, ch, pitch)),
                    Partial::None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> GrammarState {
        GrammarState::new(LanguageParams::default())
    }

    #[test]
    fn partial_words() {
        let s = g();
        assert!(s.accepts(b"P_1"));
        assert!(s.accepts(b"P_12"));
        assert!(s.accepts(b"P_9")); // P_9 or P_96
        assert!(!s.accepts(b"P_13"));
        assert!(!s.accepts(b"P_0"));
        assert!(!s.accepts(b"P_97"));
        assert!(s.accepts(b"P_12 P_2 0+060e"));
        assert!(!s.accepts(b"P_12 P_24"));
        assert!(!s.accepts(b"P_2 P_"));
        assert!(s.accepts(b"P_96 P_9"));
        assert!(!s.accepts(b"0+060e 0")); // instant after instant
        assert!(!s.accepts(b"0-060")); // nothing sounding
        assert!(s.accepts(b"0+060e P_12 0-0600+06"));
        assert!(s.accepts(b"0+060e P_12 0-0600+061a0")); // 0+062… may follow 0+061a
        assert!(!s.accepts(b"0+060e P_12 0-0600+061a0-")); // a note-off after a note-on
        assert!(!s.accepts(b"0+060e P_12 0-0600+061a0+061")); // 61 is sounding now
        assert!(s.accepts(b"0+060e P_12 0-0600+061a1"));
        assert!(!s.accepts(b"0+060e P_12 0-0610")); // 61 is not sounding
        assert!(!s.accepts(b"0+128"));
        assert!(!s.accepts(b"0+060i"));
        assert!(!s.accepts(b"0+060e  "));
        assert!(!s.accepts(b" 0+060e"));
    }

    #[test]
    fn word_end_and_tick() {
        let s = g().after(b"P_96 P_1").unwrap();
        assert_eq!(s.tick(), 96);
        assert_eq!(s.pending_time(), Some(1));
        assert_eq!(s.tick_if_word_ends(), 97);
        assert!(s.word_can_end());
        let s = s.after(b"1").unwrap();
        assert_eq!(s.pending_time(), Some(11));
        let s = g().after(b"P_9").unwrap();
        assert!(s.word_can_end()); // P_9 is an offset word
        assert!(g().after(b"0+060e1-").is_none()); // a note-off after a note-on
        let s = g().after(b"0+060e1+06").unwrap();
        assert!(s.in_item() && s.in_instant() && !s.word_can_end());
        assert_eq!(s.last_item(), Some((1, 0, 60)));
    }

    #[test]
    fn channel_filter_limits_new_items() {
        let mut s = g();
        s.set_channel_filter(1);
        assert!(s.accepts(b"0+060e"));
        assert!(!s.accepts(b"1"));
        let t = GrammarState::from_events_prefix(
            LanguageParams::default(),
            &[NoteEvent::on(0, 3, 60, 1)],
        );
        assert!(t.accepts(b" P_12 3-060"));
        let mut t = t;
        t.set_channel_filter(1);
        assert!(!t.accepts(b" P_12 3"));
        assert!(t.accepts(b" P_12 0+"));
        assert!(!t.accepts(b" P_12 0-"));
    }

    #[test]
    fn feed_reports_offset_and_keeps_state() {
        let mut s = g();
        s.feed(b"0+060e P_1").unwrap();
        let before = s;
        let r = s.feed(b"2 P_24").unwrap_err(); // after P_12 only an offset word or an instant
        assert_eq!(
            r,
            Reject {
                offset: 5,
                byte: b'4'
            }
        );
        assert_eq!(s, before);
    }
}
