//! Every token's text, once, and the sampleable tokens in a byte trie, so a mask is one
//! depth-first walk that feeds each byte once for all the tokens sharing it (docs/ENGINE.md
//! "The sampling mask").

use anyhow::{Context as _, Result};
use tokenizers::Tokenizer;

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

impl VocabTrie {
    /// Walk the trie from `root`, depth first: `step` feeds one byte to a copy of a node's state
    /// and says whether the prefix is still accepted (a refused prefix drops its whole subtree).
    /// The ids of every accepted token are appended to `out`, unsorted.
    pub fn walk<S: Copy>(
        &self,
        root: S,
        mut step: impl FnMut(&mut S, u8) -> bool,
        out: &mut Vec<u32>,
    ) {
        let mut stack: Vec<(u32, S)> = Vec::with_capacity(64);
        stack.push((0, root));
        while let Some((node, s)) = stack.pop() {
            let n = &self.nodes[node as usize];
            for &(byte, child) in &n.children {
                let mut c = s;
                if !step(&mut c, byte) {
                    continue;
                }
                out.extend_from_slice(&self.nodes[child as usize].tokens);
                if !self.nodes[child as usize].children.is_empty() {
                    stack.push((child, c));
                }
            }
        }
    }
}
