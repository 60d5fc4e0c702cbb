//! The transition function: one byte of the body moves the state (FORMAT.md "Time words" and
//! "Instant words" give the word shapes), or is refused.

use super::{GrammarState, ItemKey, Partial, Pos};
use crate::events::item::hex_digit;
use crate::events::stream::{time_class, LastWord};

impl GrammarState {
    /// One byte. Returns false (state possibly half-updated: callers work on a copy) if rejected.
    pub(super) fn step(&mut self, b: u8) -> bool {
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
