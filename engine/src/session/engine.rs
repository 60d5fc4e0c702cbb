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
