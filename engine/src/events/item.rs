//! The bytes of the language's small pieces, in one place: the items of an instant word
//! (`1-064`, `0+060e`), time words (`P_12`), and the set of sounding (channel, pitch). Every
//! reader and writer of the text (the strict decoder, the byte grammar, the decoder's context and
//! its sampling mask) goes through this codec. docs/FORMAT.md "Instant words", "Time words".

use std::fmt::Write as _;

use super::grammar::{GrammarState, Reject};
use super::{EventKind, LanguageParams, NoteEvent, WordError};

/// Bytes of a note-off item (`1-064`) and of a note-on item (`0+060e`).
pub const OFF_WIDTH: usize = 5;
pub const ON_WIDTH: usize = 6;

/// A channel's hex digit (`0`–`9`, `a`–`f`), or None.
pub fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The width of the item whose first bytes are `bytes`, known from its second byte (`+` or
/// `-`); None before it.
pub fn item_width(bytes: &[u8]) -> Option<usize> {
    match bytes.get(1)? {
        b'+' => Some(ON_WIDTH),
        _ => Some(OFF_WIDTH),
    }
}

/// One item starting at byte `i` of an instant word, at `tick`: the event and where the next
/// item starts. `last_velocity` is the language's last velocity letter.
pub fn parse_item_at(
    word: &[u8],
    i: usize,
    tick: u64,
    last_velocity: u8,
) -> Result<(NoteEvent, usize), WordError> {
    let channel = word.get(i).copied().and_then(hex_digit);
    let sign = word.get(i + 1).copied();
    let digits = word.get(i + 2..i + 5);
    let (Some(channel), Some(sign @ (b'+' | b'-')), Some(digits)) = (channel, sign, digits) else {
        return Err(WordError::Malformed(i));
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(WordError::Malformed(i));
    }
    let pitch = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    if pitch > 127 {
        return Err(WordError::PitchRange(pitch));
    }
    let pitch = pitch as u8;
    if sign == b'-' {
        return Ok((NoteEvent::off(tick, channel, pitch), i + OFF_WIDTH));
    }
    match word.get(i + 5) {
        Some(v) if (b'a'..=last_velocity).contains(v) => {
            Ok((NoteEvent::on(tick, channel, pitch, v - b'a'), i + ON_WIDTH))
        }
        _ => Err(WordError::Velocity(i + 5)),
    }
}

/// One whole item (exactly its bytes), leniently: None if it is not one.
pub fn parse_item(item: &[u8], tick: u64) -> Option<NoteEvent> {
    match parse_item_at(item, 0, tick, b'z') {
        Ok((e, end)) if end == item.len() => Some(e),
        _ => None,
    }
}

/// The complete items of an instant word's bytes, in order (an unfinished last one left out).
pub fn complete_items(word: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let width = item_width(word.get(i..)?)?;
        let item = word.get(i..i + width)?;
        i += width;
        Some(item)
    })
}

/// The bytes of an unfinished last item of an instant word (empty when the word ends at an item
/// boundary). Items are fixed width, so this needs no parsing of the items before it.
pub fn unfinished_item(word: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < word.len() {
        match item_width(&word[i..]) {
            Some(width) if i + width <= word.len() => i += width,
            _ => break,
        }
    }
    &word[i..]
}

/// A note-off item as bytes (`0-060`), without allocating.
pub fn off_item(channel: u8, pitch: u8) -> [u8; OFF_WIDTH] {
    let ch = char::from_digit(u32::from(channel & 0x0F), 16).map_or(b'0', |c| c as u8);
    [
        ch,
        b'-',
        b'0' + pitch / 100,
        b'0' + (pitch / 10) % 10,
        b'0' + pitch % 10,
    ]
}

/// The item being written, byte by byte, as a reader of a byte stream sees it: its bytes so far
/// and, once complete, the item. Copy, no allocation (it runs per byte in the sampling mask).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialItem {
    buf: [u8; ON_WIDTH],
    len: u8,
}

impl PartialItem {
    /// The unfinished last item of an instant word's bytes ([`unfinished_item`]).
    pub fn of_word(word: &[u8]) -> Self {
        let mut s = Self::default();
        for &b in unfinished_item(word) {
            s.push(b);
        }
        s
    }

    /// One more byte (bytes past an item's width are dropped).
    #[inline]
    pub fn push(&mut self, b: u8) {
        if usize::from(self.len) < self.buf.len() {
            self.buf[usize::from(self.len)] = b;
            self.len += 1;
        }
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the item is a note-on (`0+…`), known from its second byte.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.len >= 2 && self.buf[1] == b'+'
    }

    /// The channel digit, if it is written.
    #[inline]
    pub fn first_byte(&self) -> Option<u8> {
        (self.len > 0).then_some(self.buf[0])
    }

    /// The complete item its bytes make, at `tick` (None if they do not make one); the reader
    /// starts over.
    #[inline]
    pub fn take(&mut self, tick: u64) -> Option<NoteEvent> {
        let e = parse_item(self.bytes(), tick);
        self.len = 0;
        e
    }

    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Feed one byte of a text to its grammar and to this reader: the item the byte completed,
    /// if it completed one (at the grammar's tick). Err if the grammar refuses the byte.
    #[inline]
    pub fn read(&mut self, g: &mut GrammarState, b: u8) -> Result<Option<NoteEvent>, Reject> {
        let was_in = g.in_item();
        g.feed(&[b])?;
        if g.in_item() || was_in {
            self.push(b);
        }
        if g.in_item() || !was_in {
            return Ok(None);
        }
        Ok(self.take(g.tick()))
    }
}

/// Append one item (`1-064` or `0+060e`) to `out`.
pub fn push_item(out: &mut String, e: &NoteEvent) {
    let ch = char::from_digit(u32::from(e.channel & 0x0F), 16).unwrap_or('0');
    match e.kind {
        EventKind::Off => {
            let _ = write!(out, "{ch}-{:03}", e.pitch);
        }
        EventKind::On { velocity_bin } => {
            let v = char::from(b'a' + velocity_bin.min(25));
            let _ = write!(out, "{ch}+{:03}{v}", e.pitch);
        }
    }
}

/// The item of one event, as text.
pub fn item_text(e: &NoteEvent) -> String {
    let mut s = String::new();
    push_item(&mut s, e);
    s
}

/// `P_` then 1–6 digits without a leading zero: the value (whether or not the language has it).
pub fn time_word_value(b: &[u8]) -> Option<u64> {
    let digits = b.strip_prefix(b"P_")?;
    if digits.is_empty() || digits.len() > 6 || digits[0] == b'0' {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Calls `f` with the value of each canonical time word of `delta`, in order (FORMAT.md "Time
/// words": `P_<max_grid>` repeated `⌊g / max_grid⌋` times with `g = d − (d mod grid)`, then
/// `P_<g mod max_grid>` if non-zero, then `P_<d mod grid>` if non-zero).
pub fn for_each_time_word(delta: u64, params: &LanguageParams, mut f: impl FnMut(u64)) {
    let grid = u64::from(params.grid().max(1));
    let max_grid = u64::from(params.max_grid().max(1));
    let offset = delta % grid;
    let g = delta - offset;
    for _ in 0..g / max_grid {
        f(max_grid);
    }
    if !g.is_multiple_of(max_grid) {
        f(g % max_grid);
    }
    if offset != 0 {
        f(offset);
    }
}

/// The canonical time words for a delta (no words for a zero delta).
pub fn time_words(delta: u64, params: &LanguageParams) -> Vec<String> {
    let mut out = Vec::new();
    for_each_time_word(delta, params, |n| out.push(format!("P_{n}")));
    out
}

/// A set of (channel, pitch): 16 channels × 128 pitches, one 128-bit set per channel. The
/// sounding notes of a text, of a live input, of what the output has sent. Copy, no allocation
/// (real-time safe).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoteSet(pub [u128; 16]);

impl NoteSet {
    #[inline]
    pub fn contains(&self, channel: u8, pitch: u8) -> bool {
        channel < 16 && pitch < 128 && self.0[usize::from(channel)] >> pitch & 1 == 1
    }

    #[inline]
    pub fn insert(&mut self, channel: u8, pitch: u8) {
        if channel < 16 && pitch < 128 {
            self.0[usize::from(channel)] |= 1u128 << pitch;
        }
    }

    #[inline]
    pub fn remove(&mut self, channel: u8, pitch: u8) {
        if channel < 16 && pitch < 128 {
            self.0[usize::from(channel)] &= !(1u128 << pitch);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|c| *c == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|c| c.count_ones() as usize).sum()
    }

    /// The pitches of one channel, as a bit set.
    pub fn channel(&self, channel: u8) -> u128 {
        self.0.get(usize::from(channel)).copied().unwrap_or(0)
    }

    /// The pitches of one channel, ascending (no allocation).
    pub fn pitches(&self, channel: u8) -> impl Iterator<Item = u8> + '_ {
        let bits = self.channel(channel);
        (0u8..128).filter(move |&p| bits >> p & 1 == 1)
    }

    pub fn clear_channel(&mut self, channel: u8) {
        if let Some(c) = self.0.get_mut(usize::from(channel)) {
            *c = 0;
        }
    }

    /// Every (channel, pitch), in (channel, pitch) order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (0..16u8).flat_map(move |ch| self.pitches(ch).map(move |p| (ch, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_write_and_split() {
        assert_eq!(parse_item(b"0-060", 5), Some(NoteEvent::off(5, 0, 60)));
        assert_eq!(parse_item(b"f+127h", 7), Some(NoteEvent::on(7, 15, 127, 7)));
        assert_eq!(parse_item(b"0+060", 0), None);
        assert_eq!(parse_item(b"0-128", 0), None);
        assert_eq!(item_text(&NoteEvent::on(0, 10, 64, 2)), "a+064c");
        assert_eq!(unfinished_item(b"0-0711-0660+072e1+06"), b"1+06");
        assert_eq!(unfinished_item(b"0-0711-066"), b"");
        assert_eq!(unfinished_item(b"0"), b"0");
        assert_eq!(&off_item(0, 7), b"0-007");
        let mut item = PartialItem::of_word(b"0-0600+06");
        assert!(item.is_on() && item.bytes() == b"0+06");
        item.push(b'2');
        item.push(b'e');
        assert_eq!(item.take(9), Some(NoteEvent::on(9, 0, 62, 4)));
        assert!(item.is_empty());
        assert_eq!(
            parse_item_at(b"0+060z", 0, 0, b'h'),
            Err(WordError::Velocity(5))
        );
    }

    #[test]
    fn time_words_are_canonical() {
        let p = LanguageParams::default();
        assert_eq!(time_words(14, &p), ["P_12", "P_2"]);
        assert_eq!(time_words(200, &p), ["P_96", "P_96", "P_8"]);
        assert!(time_words(0, &p).is_empty());
        assert_eq!(time_word_value(b"P_96"), Some(96));
        assert_eq!(time_word_value(b"P_012"), None);
    }

    #[test]
    fn note_sets() {
        let mut s = NoteSet::default();
        s.insert(3, 64);
        s.insert(3, 60);
        s.insert(0, 127);
        assert!(s.contains(3, 64) && !s.contains(3, 65) && !s.contains(16, 0));
        assert_eq!(s.iter().collect::<Vec<_>>(), [(0, 127), (3, 60), (3, 64)]);
        s.clear_channel(3);
        assert_eq!(s.len(), 1);
    }
}
