"""The training data: event texts cut into token windows, the seeded order they are drawn in,
their targets, and the unigram baseline the model must beat.

    Windows     ids (n, L) padded with [PAD]; header[i] = how many leading tokens are metadata
    Sampler     windows in a seeded shuffle, epoch after epoch; its state is (epoch, cursor)

No torch at module level: `midicopilot eval` cuts windows in a player's install, which has none.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midicopilot.train import corpus as corpus_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train.errors import TrainError

IGNORE = -100  # the label of a position that is not predicted (header, [PAD])


# --- windows -------------------------------------------------------------------------------------

@dataclass
class Windows:
    """Tokenized training windows: `ids` (n, L) padded with [PAD]; the first `header[i]` tokens of
    window i are the metadata header (given, never predicted)."""

    ids: np.ndarray
    header: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def cut_windows(header_ids: list[int], body_ids: np.ndarray, word_start: np.ndarray,
                context_length: int) -> list[np.ndarray]:
    """Cut one example into windows of at most `context_length` tokens, each the header followed
    by body tokens from a word start to a word start. The last window is moved back (overlapping
    its neighbour) so that it is full too."""
    budget = context_length - len(header_ids)
    if budget < 8:
        raise TrainError(f"data.context_length {context_length} leaves no room after a "
                         f"{len(header_ids)}-token header")
    n = len(body_ids)
    starts = np.flatnonzero(word_start[body_ids])
    starts = np.append(starts, n)  # the end is a boundary too
    header = np.asarray(header_ids, dtype=body_ids.dtype)
    windows = []
    s = 0
    while s < n:
        if s + budget >= n:
            # the tail: start as early as a full window allows, but no later than s
            back = starts[np.searchsorted(starts, n - budget)]
            s = min(s, int(back)) if windows else s
            windows.append(np.concatenate([header, body_ids[s:n]]))
            break
        # the last word start at or before s + budget (cutting mid-word only if one word is longer)
        i = np.searchsorted(starts, s + budget, side="right") - 1
        e = int(starts[i]) if starts[i] > s else s + budget
        windows.append(np.concatenate([header, body_ids[s:e]]))
        s = e
    return windows


def make_windows(texts: Iterable[str], tokenizer, context_length: int, header: bool, eos: bool,
                 progress: bool = False, desc: str = "windows") -> Windows:
    """Tokenize event texts and cut them into windows."""
    from tqdm import tqdm

    vocab = tokenizer.get_vocab_size()
    word_start = np.zeros(vocab + 1, dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        word_start[i] = token.startswith("Ġ")
    eos_id = tokenizer.token_to_id(tok_mod.EOS_TOKEN)
    word_start[eos_id] = True
    dtype = np.uint16 if vocab <= 65535 else np.int32
    rows: list[np.ndarray] = []
    heads: list[int] = []
    header_cache: dict[str, list[int]] = {}

    def add(batch: list[str]) -> None:
        headers = [" ".join(corpus_mod.header_words(t)) for t in batch]
        bodies = [" " + tok_mod.body_of(t) for t in batch]
        encoded = tokenizer.encode_batch(bodies, add_special_tokens=False)
        for head, enc in zip(headers, encoded, strict=True):
            if header and head:
                if head not in header_cache:
                    header_cache[head] = tokenizer.encode(head, add_special_tokens=False).ids
                head_ids = header_cache[head]
            else:
                head_ids = []
            body = np.asarray(enc.ids + ([eos_id] if eos else []), dtype=dtype)
            for window in cut_windows(head_ids, body, word_start, context_length):
                rows.append(window)
                heads.append(len(head_ids))

    batch: list[str] = []
    for text in tqdm(texts, desc=desc, unit="ex", disable=not progress, leave=False):
        batch.append(text)
        if len(batch) >= 512:
            add(batch)
            batch = []
    if batch:
        add(batch)
    ids = np.full((len(rows), context_length), tokenizer.token_to_id(tok_mod.PAD_TOKEN),
                  dtype=dtype)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return Windows(ids, np.asarray(heads, dtype=np.int16))


def load_windows(run: Path, split: str) -> Windows:
    """The windows a run folder keeps in data/ (the ids memory-mapped)."""
    try:
        return Windows(np.load(run / "data" / f"{split}-ids.npy", mmap_mode="r"),
                       np.load(run / "data" / f"{split}-header.npy"))
    except (OSError, ValueError) as err:
        raise TrainError(f"{run}/data: missing or damaged windows ({err})") from None


# --- targets and the unigram baseline ------------------------------------------------------------

def targets_of(ids, header, pad_id: int):
    """Labels for next-token prediction: [PAD] and header positions are ignored."""
    import torch

    labels = ids.long().clone()
    labels[ids == pad_id] = IGNORE
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    labels[positions < header.unsqueeze(1)] = IGNORE
    return labels


def _targets(w: Windows, pad_id: int) -> np.ndarray:
    """Every predicted token of the windows (header and [PAD] positions left out)."""
    import torch

    labels = targets_of(torch.from_numpy(w.ids.astype(np.int64)),
                        torch.from_numpy(w.header.astype(np.int64)), pad_id)[:, 1:]
    flat = labels.flatten()
    return flat[flat != IGNORE].numpy()


def unigram_counts(train: Windows, vocab_size: int, pad_id: int) -> np.ndarray:
    """How often each token is a target in the train windows (a bundle keeps them, so that
    `midicopilot eval` can give the unigram baseline on any piece)."""
    return np.bincount(_targets(train, pad_id), minlength=vocab_size)


def unigram_loss(train: Windows, val: Windows, vocab_size: int, pad_id: int) -> float:
    """Cross-entropy (nats/token) of the train split's add-one unigram distribution on val
    targets: the baseline a model must beat."""
    counts = unigram_counts(train, vocab_size, pad_id).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    t = _targets(val, pad_id)
    return float(-logp[t].mean()) if len(t) else float("nan")


# --- data order ----------------------------------------------------------------------------------

class Sampler:
    """Windows in a seeded shuffle, epoch after epoch; its state is (epoch, cursor)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch = self.cursor = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def _order(self) -> np.ndarray:
        if self._perm is None or self._perm[0] != self.epoch:
            self._perm = (self.epoch, np.random.default_rng([self.seed, self.epoch])
                          .permutation(self.n))
        return self._perm[1]

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            chunk = self._order()[self.cursor:self.cursor + k]
            out.append(chunk)
            k -= len(chunk)
            self.cursor += len(chunk)
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return np.concatenate(out)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
