//! Events ↔ text (FORMAT.md "Text shape"), with a strict parser.

use std::fmt::Write as _;

use super::item::{for_each_time_word, push_item};
use super::stream::StreamDecoder;
use super::{EventError, LanguageParams, NoteEvent};

/// Whether `word` is a metadata word `[KIND_NAME]`: KIND a capital letter then capitals and
/// digits, NAME capitals, digits and `_` (the Python side's `\[[A-Z][A-Z0-9]*_[A-Z0-9_]+\]`).
pub fn meta_word_is_valid(word: &str) -> bool {
    let b = word.as_bytes();
    if b.len() < 5 || b[0] != b'[' || b[b.len() - 1] != b']' || !b[1].is_ascii_uppercase() {
        return false;
    }
    let inner = &b[1..b.len() - 1];
    let Some(us) = inner.iter().position(|c| *c == b'_') else {
        return false;
    };
    let (kind, name) = (&inner[..us], &inner[us + 1..]);
    kind.iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !name.is_empty()
        && name
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// The metadata word for a kind and a free-form name, as the Python side's `meta_token`:
/// upper-cased, every run of other characters than A–Z and 0–9 becomes `_`, `_` trimmed at both
/// ends, `NONE` if nothing is left: ("genre", "hip hop") → `[GENRE_HIP_HOP]`.
pub fn meta_token(kind: &str, name: &str) -> String {
    let mut clean = String::new();
    let mut in_run = false;
    for c in name.to_uppercase().chars() {
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            clean.push(c);
            in_run = false;
        } else if !in_run {
            clean.push('_');
            in_run = true;
        }
    }
    let clean = clean.trim_matches('_');
    let clean = if clean.is_empty() { "NONE" } else { clean };
    format!("[{}_{clean}]", kind.to_uppercase())
}

/// Write the whole text: `meta` words, then the body of `events` (sorted here), then `"\n"`.
pub fn events_to_text(events: &[NoteEvent], params: &LanguageParams, meta: &[String]) -> String {
    let mut sorted = events.to_vec();
    sorted.sort();
    let mut out = String::with_capacity(meta.len() * 16 + sorted.len() * 8 + 1);
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(' ');
        }
        first = false;
    };
    for m in meta {
        sep(&mut out);
        out.push_str(m);
    }
    let mut now = 0u64;
    let mut i = 0;
    while i < sorted.len() {
        let tick = sorted[i].tick;
        for_each_time_word(tick - now, params, |n| {
            sep(&mut out);
            let _ = write!(out, "P_{n}");
        });
        sep(&mut out);
        while i < sorted.len() && sorted[i].tick == tick {
            push_item(&mut out, &sorted[i]);
            i += 1;
        }
        now = tick;
    }
    out.push('\n');
    out
}

/// A parsed text: its header words, its events and the time its last word reaches (trailing
/// time words included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedText {
    pub meta: Vec<String>,
    pub events: Vec<NoteEvent>,
    pub end_tick: u64,
}

/// Parse a whole text strictly: words separated by single spaces, at most one final newline,
/// every word valid in sequence (see [`StreamDecoder`]).
pub fn parse_text_full(text: &str, params: &LanguageParams) -> Result<ParsedText, EventError> {
    params.validate()?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut parsed = ParsedText {
        meta: Vec::new(),
        events: Vec::new(),
        end_tick: 0,
    };
    if body.is_empty() {
        return Ok(parsed);
    }
    let mut decoder = StreamDecoder::new(*params);
    for (index, word) in body.split(' ').enumerate() {
        if word.is_empty() {
            return Err(EventError::Text(format!(
                "empty word {index}: words are separated by exactly one space, with none leading or trailing"
            )));
        }
        let events = decoder.feed_word(word).map_err(|e| match e {
            EventError::Word { word, reason, .. } => EventError::Word {
                index,
                word,
                reason,
            },
            other => other,
        })?;
        if decoder.is_header() {
            parsed.meta.push(word.to_string());
        }
        parsed.events.extend(events);
    }
    parsed.end_tick = decoder.tick();
    Ok(parsed)
}

/// Parse a whole text: (metadata words, events).
pub fn parse_text(
    text: &str,
    params: &LanguageParams,
) -> Result<(Vec<String>, Vec<NoteEvent>), EventError> {
    let p = parse_text_full(text, params)?;
    Ok((p.meta, p.events))
}

#[cfg(test)]
mod tests {
    use super::super::item::time_words;
    use super::*;

    fn words(d: u64) -> String {
        time_words(d, &LanguageParams::default()).join(" ")
    }

    #[test]
    fn format_md_time_examples() {
        assert_eq!(words(14), "P_12 P_2");
        assert_eq!(words(12), "P_12");
        assert_eq!(words(5), "P_5");
        assert_eq!(words(96), "P_96");
        assert_eq!(words(110), "P_96 P_12 P_2");
        assert_eq!(words(200), "P_96 P_96 P_8");
        assert_eq!(words(0), "");
    }

    #[test]
    fn meta_words() {
        for ok in [
            "[GENRE_BLUES]",
            "[PART_PIANO]",
            "[A_B]",
            "[KIND_NAME_2]",
            "[A_B__]",
            "[K9_X]",
        ] {
            assert!(meta_word_is_valid(ok), "{ok}");
        }
        for bad in [
            "[GENRE]",
            "[_X]",
            "[X_]",
            "[genre_x]",
            "GENRE_X",
            "[A B_C]",
            "[__]",
            "[]",
            "[___]",
            "[1_X]",
            "[A_b]",
        ] {
            assert!(!meta_word_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn meta_tokens_like_python() {
        assert_eq!(meta_token("genre", "blues"), "[GENRE_BLUES]");
        assert_eq!(
            meta_token("part", "  hip-hop  piano "),
            "[PART_HIP_HOP_PIANO]"
        );
        assert_eq!(meta_token("genre", "é"), "[GENRE_NONE]");
        assert_eq!(meta_token("genre", "straße 2"), "[GENRE_STRASSE_2]");
    }

    #[test]
    fn text_shape() {
        let p = LanguageParams::default();
        let ev = vec![
            NoteEvent::on(0, 1, 60, 4),
            NoteEvent::on(0, 0, 64, 7),
            NoteEvent::off(14, 1, 60),
            NoteEvent::off(14, 0, 64),
            NoteEvent::on(14, 0, 64, 0),
            NoteEvent::off(26, 0, 64),
        ];
        let meta = vec!["[GENRE_X]".to_string()];
        let text = events_to_text(&ev, &p, &meta);
        assert_eq!(
            text,
            "[GENRE_X] 0+064h1+060e P_12 P_2 0-0641-0600+064a P_12 0-064\n"
        );
        let (m, back) = parse_text(&text, &p).unwrap();
        assert_eq!(m, meta);
        let mut sorted = ev.clone();
        sorted.sort();
        assert_eq!(back, sorted);
        assert_eq!(events_to_text(&[], &p, &[]), "\n");
    }

    #[test]
    fn shape_errors() {
        let p = LanguageParams::default();
        for bad in [
            " 0+060a",
            "0+060a ",
            "0+060a  P_12 0-060",
            "0+060a\n\n",
            "0+060a\tP_12",
        ] {
            assert!(parse_text(bad, &p).is_err(), "{bad:?}");
        }
        assert!(parse_text("", &p).unwrap().1.is_empty());
        assert!(parse_text("\n", &p).unwrap().1.is_empty());
    }
}
