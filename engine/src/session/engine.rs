//! The shared, read-only parts of a bundle a session plays with ([`Engine`]).

use std::sync::Arc;

use anyhow::{ensure, Result};
use tokenizers::Tokenizer;

use crate::bundle::{Bundle, PlayDefaults};
use crate::decode::{TokenTable, VocabTrie};
use crate::events::LanguageParams;
use crate::model::Olmo2;

/// The shared, read-only parts a session needs from a bundle: the model and the vocabulary.
#[derive(Clone)]
pub struct Engine {
    pub model: Arc<Olmo2>,
    pub tokenizer: Arc<Tokenizer>,
    pub table: Arc<TokenTable>,
    pub trie: Arc<VocabTrie>,
    pub params: LanguageParams,
    /// Opens the context when there are no metadata words.
    pub opener: u32,
    /// The bundle's metadata tokens.
    pub meta_tokens: Vec<String>,
    /// How the bundle recommends playing it (header, sampling, polyphony).
    pub defaults: PlayDefaults,
    /// For each velocity bin, the bin the band is written with in the context: the nearest one
    /// the model heard the band play in training (the identity when the bundle does not say).
    pub band_bins: [u8; 26],
}

impl Engine {
    pub fn new(bundle: &Bundle, model: Arc<Olmo2>) -> Result<Self> {
        let p = &bundle.meta.params;
        let params = LanguageParams {
            ticks_per_quarter: p.ticks_per_quarter,
            velocity_bins: u8::try_from(p.velocity_bins).unwrap_or(u8::MAX),
        };
        params.validate()?;
        ensure!(
            p.grid() == params.grid() && p.max_grid() == params.max_grid(),
            "the bundle's grid ({}) and bar ({}) differ from event language v1's (tpq/2, 4·tpq)",
            p.grid(),
            p.max_grid()
        );
        let table = TokenTable::from_tokenizer(&bundle.tokenizer, model.vocab_size())?;
        let trie = VocabTrie::new(&table);
        Ok(Self {
            model,
            tokenizer: Arc::new(bundle.tokenizer.clone()),
            table: Arc::new(table),
            trie: Arc::new(trie),
            params,
            opener: bundle.eos_id,
            meta_tokens: bundle.meta.meta_tokens.clone(),
            defaults: bundle.meta.defaults.clone(),
            band_bins: band_bins(bundle.meta.band_velocities.as_deref(), &params)?,
        })
    }

    /// The header for a genre and a part (`None`: the bundle's recommended one, else its first of
    /// that kind, if any).
    /// Names are upper-cased; an unknown one is an error listing the known ones.
    pub fn header(&self, genre: Option<&str>, part: Option<&str>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let genre = genre.or(self.defaults.genre.as_deref());
        let part = part.or(self.defaults.part.as_deref());
        for (kind, name) in [("GENRE", genre), ("PART", part)] {
            let prefix = format!("[{kind}_");
            let known: Vec<&String> = self
                .meta_tokens
                .iter()
                .filter(|t| t.starts_with(&prefix))
                .collect();
            match name {
                Some(n) => {
                    let word = format!("[{kind}_{}]", n.to_ascii_uppercase());
                    ensure!(
                        known.iter().any(|t| **t == word),
                        "the bundle has no {word} (its {} words: {})",
                        kind.to_ascii_lowercase(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                    );
                    out.push(word);
                }
                None => {
                    if let Some(first) = known.first() {
                        out.push((*first).clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Each velocity bin mapped to the nearest bin of `trained` (letters; a tie goes to the softer).
/// A model trained on music without dynamics has only ever read the band's notes with one
/// velocity letter, and BPE makes `1+067h` and `1+067f` different tokens: given a bin it never
/// saw, it does not read the pitch either (docs/ENGINE.md, "Velocities").
pub fn band_bins(trained: Option<&str>, params: &LanguageParams) -> Result<[u8; 26]> {
    let mut map: [u8; 26] = std::array::from_fn(|b| b as u8);
    let Some(letters) = trained.filter(|t| !t.is_empty()) else {
        return Ok(map);
    };
    let last = params.last_velocity_letter();
    let mut bins = Vec::new();
    for c in letters.bytes() {
        ensure!(
            (b'a'..=last).contains(&c),
            "band_velocities {letters:?}: {:?} is not a velocity letter a–{}",
            c as char,
            last as char
        );
        bins.push(c - b'a');
    }
    for (bin, heard) in map
        .iter_mut()
        .enumerate()
        .take(usize::from(params.velocity_bins))
    {
        let bin = bin as i32;
        *heard = *bins
            .iter()
            .min_by_key(|&&b| ((i32::from(b) - bin).abs(), b))
            .unwrap_or(&(bin as u8));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_velocities_map_to_the_nearest_trained_bin() {
        let params = LanguageParams {
            ticks_per_quarter: 24,
            velocity_bins: 8,
        };
        let identity: Vec<u8> = (0..8).collect();
        assert_eq!(band_bins(None, &params).unwrap()[..8], identity[..]);
        assert_eq!(band_bins(Some(""), &params).unwrap()[..8], identity[..]);
        assert_eq!(band_bins(Some("f"), &params).unwrap()[..8], [5; 8]);
        // d and g: a b c d → d, e → d (tie to the softer), f g h → g
        assert_eq!(
            band_bins(Some("gd"), &params).unwrap()[..8],
            [3, 3, 3, 3, 3, 6, 6, 6]
        );
        let e = band_bins(Some("fz"), &params).unwrap_err().to_string();
        assert!(e.contains("'z' is not a velocity letter a–h"), "{e}");
    }
}
