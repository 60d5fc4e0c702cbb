//! The model's side of the session: one step of generation, and listening at an instant it may
//! share with the band (docs/ENGINE.md, "Listening").

use anyhow::{Context as _, Result};

use super::Session;
use crate::decode::{allowed_tokens, fallback_text, grammar_only_tokens, Deadlines, MaskState};
use crate::events::item::{complete_items, unfinished_item};

impl Session {
    /// One step of the model: at an instant it may share with the band, imagine that instant
    /// ([`Session::step_at_instant`]); elsewhere sample one token under the channel-0 mask.
    pub(super) fn step(&mut self) -> Result<()> {
        let t0 = std::time::Instant::now();
        let base = self.ctx.base_tick();
        // Nothing before "now" (the live backends' now is the release point, now + horizon, and
        // their write lead on top):
        // what the model would write there is already late. An instant the context's own time
        // words force earlier, or a note due earlier, moves the bound back so a mask remains.
        let now = (self.now + self.write_lead).saturating_sub(base);
        let mut state = MaskState::new(*self.ctx.grammar(), self.ctx.current_word());
        let mut deadlines = self.ctx.deadlines(self.cfg.policy.max_note_ticks);
        self.stats.deadlines_relaxed += deadlines.relax_for(&state, &self.cfg.policy) as u64;
        if !state.grammar.in_instant() {
            self.stats.deadlines_deferred +=
                deadlines.defer_to(&state, &self.cfg.policy, now) as u64;
        }
        let due = deadlines.earliest(state.grammar.sounding().channel(0));
        let mut latest = state.latest_instant(&self.cfg.policy, &deadlines);
        if !state.grammar.in_instant()
            && latest.is_some_and(|l| l < now)
            && due.is_none_or(|d| d >= now)
        {
            // Time words written in an earlier step (a live backend writes a few tokens at a
            // time) now lead only to instants already past: they are dropped and the model
            // decides again from its last event, where it can still be on time.
            let before = self.ctx.model_tick();
            self.ctx.drop_trailing_time()?;
            if self.ctx.model_tick() != before {
                self.stats.time_redecided += 1;
                state = MaskState::new(*self.ctx.grammar(), self.ctx.current_word());
                latest = state.latest_instant(&self.cfg.policy, &deadlines);
            }
        }
        let floor = now
            .min(latest.unwrap_or(u64::MAX))
            .min(due.unwrap_or(u64::MAX));
        let state = state.with_earliest_on(now).with_earliest_instant(floor);
        if let Some(at) = state.instant_start() {
            // Listen where the band can still come (not in the past), no channel-0 note must end
            // before the wait is over (and the write lead after it: the forced note-off must
            // still be on time), and the cache has room to imagine in.
            let listen = self.cfg.listen
                && at >= now
                && due.is_none_or(|d| d > at + self.cfg.wait_ticks + self.write_lead)
                && self.ctx.imagine_room() > MAX_IMAGINED;
            if listen && self.step_at_instant(state, &deadlines, base + at, t0)? {
                return Ok(());
            }
        }
        allowed_tokens(
            &self.engine.trie,
            &state,
            &self.cfg.policy,
            &deadlines,
            &mut self.allowed,
        );
        if self.allowed.is_empty() {
            self.stats.fallbacks += 1;
            grammar_only_tokens(&self.engine.trie, &state, &mut self.allowed);
        }
        self.stats.mask_seconds += t0.elapsed().as_secs_f64();
        self.stats.allowed_total += self.allowed.len() as u64;
        match self.sampler.sample(self.ctx.logits(), &self.allowed) {
            Some(id) => {
                self.ctx.push_token(id)?;
            }
            None => {
                let text = fallback_text(&state).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no token can continue the context {:?}",
                        String::from_utf8_lossy(self.ctx.body_text())
                    )
                })?;
                self.ctx.push_text(&text)?;
            }
        }
        self.stats.tokens += 1;
        Ok(())
    }

    /// At the start of an instant (tick `at`, absolute): sample from the model's whole
    /// distribution, the band's items included. A time word is written as usual. A token that
    /// opens the instant is continued in the model's imagination to the instant's end; of what it
    /// imagined, the channel-0 items are written and the band's forgotten — the model's part of
    /// the instant, drawn as the model believes the whole instant goes. If the band was in it,
    /// the model then waits for the band (docs/ENGINE.md, "Listening"). Returns false when there
    /// was nothing to sample, or nothing either side plays came of it (the caller takes the
    /// plain channel-0 path).
    fn step_at_instant(
        &mut self,
        state: MaskState,
        deadlines: &Deadlines,
        at: u64,
        t0: std::time::Instant,
    ) -> Result<bool> {
        let (trie, table, policy) = (&self.engine.trie, &self.engine.table, self.cfg.policy);
        let whole = state.with_band();
        allowed_tokens(trie, &whole, &policy, deadlines, &mut self.allowed);
        self.stats.mask_seconds += t0.elapsed().as_secs_f64();
        self.stats.allowed_total += self.allowed.len() as u64;
        let Some(first) = self.sampler.sample(self.ctx.logits(), &self.allowed) else {
            return Ok(false);
        };
        self.stats.tokens += 1;
        if !whole.opens_instant(table.bytes(first)) {
            // A time word (or the space before the instant): the band's and the model's alike.
            self.ctx.push_token(first)?;
            return Ok(true);
        }
        let mut text = table.bytes(first).to_vec();
        let mut st = whole
            .after(&text, &policy, deadlines)
            .context("internal: a sampled token is not accepted")?;
        let mut logits = self.ctx.imagine(&[first])?;
        for _ in 1..MAX_IMAGINED {
            let t1 = std::time::Instant::now();
            allowed_tokens(trie, &st, &policy, deadlines, &mut self.allowed);
            self.stats.mask_seconds += t1.elapsed().as_secs_f64();
            let Some(id) = self.sampler.sample(&logits, &self.allowed) else {
                break;
            };
            let bytes = table.bytes(id);
            if bytes.first() == Some(&b' ') {
                break; // the instant ends: the next word begins
            }
            let Some(next) = st.after(bytes, &policy, deadlines) else {
                break;
            };
            st = next;
            text.extend_from_slice(bytes);
            if band_strikes(&text) {
                // Items sort note-offs first, then note-ons by channel: after the band's first
                // note-on nothing of channel 0 can follow, so the rest is not imagined.
                break;
            }
            logits = self.ctx.imagine(&[id])?;
        }
        self.ctx.forget_imagined();
        self.stats.instants_imagined += 1;
        let (own, band) = split_instant(&text);
        // The band's note-on the imagining stopped at may be unfinished: it is the band's all
        // the same.
        let band = band || band_strikes(&text);
        if own.is_empty() && !band {
            // Nothing imagined that either side plays (cut short by the mask): the plain
            // channel-0 step writes a token, so the session always moves on.
            self.stats.imagined_nothing += 1;
            return Ok(false);
        }
        if !own.is_empty() {
            let mut out = Vec::with_capacity(own.len() + 1);
            if text.first() == Some(&b' ') {
                out.push(b' ');
            }
            out.extend_from_slice(&own);
            self.ctx.push_text(&out)?;
        }
        if band {
            self.waiting = Some(at);
            self.stats.left_to_band += 1;
        }
        Ok(true)
    }
}

/// Most tokens one imagined instant may take.
const MAX_IMAGINED: usize = super::MAX_INSTANT_TOKENS;

/// Whether an instant word's text has reached a note-on of the band (its item begun: a channel
/// other than 0 and `+`).
fn band_strikes(text: &[u8]) -> bool {
    let word = text.strip_prefix(b" ").unwrap_or(text);
    let rest = unfinished_item(word);
    complete_items(word)
        .chain((rest.len() >= 2).then_some(rest))
        .any(|item| item[0] != b'0' && item[1] == b'+')
}

/// The complete channel-0 items of an instant word's text (a leading space skipped), in their
/// order, and whether it had any of the band's items.
fn split_instant(text: &[u8]) -> (Vec<u8>, bool) {
    let word = text.strip_prefix(b" ").unwrap_or(text);
    let (mut own, mut band) = (Vec::new(), false);
    for item in complete_items(word) {
        if item.first() == Some(&b'0') {
            own.extend_from_slice(item);
        } else {
            band = true;
        }
    }
    (own, band)
}

#[cfg(test)]
mod tests {
    use super::{band_strikes, split_instant};

    #[test]
    fn the_band_strikes_once_an_item_of_another_channel_is_a_note_on() {
        assert!(!band_strikes(b" 0-0711-0662-0620+072e"));
        assert!(band_strikes(b" 0-0711-0662-0620+072e1+"));
        assert!(band_strikes(b"0+072e1+067f"));
        assert!(!band_strikes(b"1-0660+07"));
        assert!(!band_strikes(b" 1"));
        assert!(band_strikes(b"2+0"));
    }

    #[test]
    fn an_imagined_instant_splits_into_the_model_s_items_and_the_band() {
        assert_eq!(
            split_instant(b" 0-0711-0662-0620+072e1+067f"),
            (b"0-0710+072e".to_vec(), true)
        );
        assert_eq!(split_instant(b"0+072e0+07"), (b"0+072e".to_vec(), false));
        assert_eq!(split_instant(b"1-0661+06"), (Vec::new(), true));
        assert_eq!(split_instant(b" "), (Vec::new(), false));
    }
}
