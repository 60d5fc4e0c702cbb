"""The MIDI tokenizer: byte-level BPE (Hugging Face `tokenizers`) over event text.

- Pre-tokenizer: split at spaces, each space kept with the word after it (" P_12", " 0+060e"),
  then ByteLevel without its GPT-2 regex (which would split letters from digits and cripple the
  merges). BPE never merges across a word, so a grid word and its offset word (`P_12 P_2`) can
  never become one token, and a window may start at any word.
- Special tokens: `[PAD]` = 0, `[EOS]` = 1, then every metadata token of the corpora (`[GENRE_…]`,
  `[PART_…]`), never split.
- ByteLevel decoder: decoding token ids gives the event text back.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from midicopilot.train import corpus as corpus_mod
from midicopilot.train import events as ev

PAD_TOKEN = "[PAD]"
EOS_TOKEN = "[EOS]"
MIN_VOCAB, MAX_VOCAB = 1024, 8192
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A bad tokenizer request or file. `str(err)` is one line."""


def _pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="merged_with_next"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_tokenizer(corpora: Sequence[Path | str], vocab_size: int, *, min_frequency: int = 2,
                    max_examples: int = 0, progress: bool = True):
    """Train the BPE tokenizer on the train split of one or more corpus folders.

    `max_examples` > 0 trains on an evenly spaced sample of that many examples per corpus (BPE
    statistics settle long before a transposed corpus is exhausted; training time grows with it).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise TokenizerError(f"--vocab must be between {MIN_VOCAB} and {MAX_VOCAB}, "
                             f"not {vocab_size}")
    if not corpora:
        raise TokenizerError("no corpus given")
    meta: set[str] = set()
    for corpus in corpora:
        manifest = corpus_mod.load_manifest(corpus)
        if not manifest["counts"].get("train", {}).get("examples"):
            raise TokenizerError(f"{corpus}: the corpus has no training examples")
        meta.update(manifest["meta_tokens"])
    special = [PAD_TOKEN, EOS_TOKEN, *sorted(meta)]
    if len(special) + 256 >= vocab_size:
        raise TokenizerError(f"--vocab {vocab_size} leaves no room for merges after "
                             f"{len(special)} special tokens and 256 bytes")

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    texts = _bodies(corpora, "train", max_examples)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.token_to_id(PAD_TOKEN) != 0 or tokenizer.token_to_id(EOS_TOKEN) != 1:
        raise TokenizerError("internal: [PAD] and [EOS] did not get ids 0 and 1")
    return tokenizer


def _bodies(corpora: Sequence[Path | str], split: str, max_examples: int = 0) -> Iterator[str]:
    """Body texts (headers stripped: the metadata tokens are special, not learned)."""
    for corpus in corpora:
        total = corpus_mod.load_manifest(corpus)["counts"].get(split, {}).get("examples", 0)
        stride = max(1, -(-total // max_examples)) if max_examples > 0 else 1
        for i, text in enumerate(corpus_mod.corpus_texts(corpus, split)):
            if i % stride == 0:
                yield body_of(text)


def body_of(text: str) -> str:
    header = corpus_mod.header_words(text)
    return " ".join(text.split(" ")[len(header):])


def load_tokenizer(path: Path | str):
    """A tokenizer.json, or a folder holding one."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except FileNotFoundError:
        raise TokenizerError(f"{file}: no such tokenizer (train one with `midicopilot tokenizer "
                             "train`)") from None
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exception on bad JSON
        raise TokenizerError(f"{file}: not a tokenizer.json ({str(err).splitlines()[0]})"
                             ) from None
    if tokenizer.token_to_id(PAD_TOKEN) != 0 or tokenizer.token_to_id(EOS_TOKEN) != 1:
        raise TokenizerError(f"{file}: not a midicopilot tokenizer ([PAD]=0, [EOS]=1)")
    return tokenizer


def meta_tokens(tokenizer) -> list[str]:
    """The metadata tokens of a tokenizer (special tokens other than [PAD] and [EOS])."""
    added = tokenizer.get_added_tokens_decoder()
    return [tok.content for _, tok in sorted(added.items())
            if tok.special and tok.content not in (PAD_TOKEN, EOS_TOKEN)]


def token_texts(tokenizer) -> dict[int, str]:
    """The text (UTF-8 decoded bytes) each non-special token stands for."""
    from tokenizers import decoders

    decoder = decoders.ByteLevel()
    special = set(tokenizer.get_added_tokens_decoder())
    return {i: decoder.decode([tok]) for tok, i in tokenizer.get_vocab().items()
            if i not in special}


def tokens_spanning_words(tokenizer) -> list[str]:
    """Tokens whose text holds a space anywhere but at its start (they would span two words).
    Empty for a tokenizer trained here: the proof that grid and offset words never merge."""
    return [text for text in token_texts(tokenizer).values() if " " in text[1:]]


@dataclass
class TokenStats:
    tokens: int
    notes: int
    examples: int

    @property
    def tokens_per_note(self) -> float:
        return self.tokens / self.notes if self.notes else 0.0


def tokens_per_note(tokenizer, texts: Iterable[str], batch: int = 256) -> TokenStats:
    """Body tokens per note (note-on) over event texts (headers are not counted)."""
    tokens = notes = examples = 0
    chunk: list[str] = []

    def flush() -> None:
        nonlocal tokens
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch(chunk, add_special_tokens=False))
        chunk.clear()

    for text in texts:
        body = body_of(text)
        notes += ev.text_stats(body).notes
        examples += 1
        chunk.append(body)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return TokenStats(tokens, notes, examples)


def corpus_tokens_per_note(tokenizer, corpus: Path | str, split: str = "val") -> TokenStats:
    return tokens_per_note(tokenizer, corpus_mod.corpus_texts(corpus, split))


def save_tokenizer(tokenizer, out: Path | str, info: dict | None = None) -> Path:
    """Write DIR/tokenizer.json (and DIR/tokenizer-info.json with how it was made)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TOKENIZER_FILE
    tokenizer.save(str(path))
    if info is not None:
        (out / "tokenizer-info.json").write_text(json.dumps(info, indent=1) + "\n")
    return path
