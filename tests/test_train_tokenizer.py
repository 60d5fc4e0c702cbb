"""The BPE tokenizer, trained for real on a corpus of real MIDI files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from midicopilot.train import corpus as corpus_mod
from midicopilot.train import events as ev
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train.music21_midi import bach_chorales, package_midi_files


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "corpus"
    corpus_mod.build_corpus([*package_midi_files(), *bach_chorales()[:30]], out,
                            genre="mixed", val_fraction=0.2, seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def tokenizer(corpus: Path):
    return tok_mod.train_tokenizer([corpus], 1024, progress=False)


def test_special_tokens_come_first_and_are_never_split(tokenizer, corpus: Path) -> None:
    assert tokenizer.token_to_id("[PAD]") == 0 and tokenizer.token_to_id("[EOS]") == 1
    meta = json.loads((corpus / "corpus.json").read_text())["meta_tokens"]
    assert meta and tok_mod.meta_tokens(tokenizer) == sorted(meta)
    assert tokenizer.get_vocab_size() == 1024
    for token in meta:
        ids = tokenizer.encode(f"{token} P_12 0+060e", add_special_tokens=False).ids
        assert ids[0] == tokenizer.token_to_id(token)


def test_no_token_spans_two_words(tokenizer) -> None:
    texts = tok_mod.token_texts(tokenizer)
    assert len(texts) > 900  # the whole vocabulary but the special tokens
    assert tok_mod.tokens_spanning_words(tokenizer) == []
    for text in texts.values():
        assert " " not in text[1:]
        # a grid word and its offset word can never share a token
        assert not ("P_" in text and text.count("P_") > 1)
    # merges did happen inside words: multi-item and whole-word tokens exist
    assert any(len(t) >= 6 for t in texts.values())
    assert any(t.startswith(" P_") and t[3:].isdigit() for t in texts.values())


def test_tokens_stay_inside_words_on_real_text(tokenizer, corpus: Path) -> None:
    text = next(corpus_mod.corpus_texts(corpus, "val"))
    encoding = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == text
    word_of = []
    for i, word in enumerate(text.split(" ")):
        word_of.extend([i] * len(word) + [i + 1])  # the space belongs to the next word
    for start, end in encoding.offsets:
        assert word_of[start] == word_of[end - 1]


def test_tokens_per_note(tokenizer, corpus: Path) -> None:
    texts = list(corpus_mod.corpus_texts(corpus, "val"))
    stats = tok_mod.tokens_per_note(tokenizer, texts)
    notes = sum(ev.text_stats(tok_mod.body_of(t)).notes for t in texts)
    tokens = sum(len(tokenizer.encode(tok_mod.body_of(t), add_special_tokens=False).ids)
                 for t in texts)
    assert (stats.notes, stats.tokens) == (notes, tokens)
    # at least the on-word of each note is a token, and BPE must have merged (< 1 token a byte)
    assert 1.0 < stats.tokens_per_note < 6.0
    assert stats.tokens < sum(len(tok_mod.body_of(t)) for t in texts) / 3


def test_tokenizer_cli_reports_tokens_per_note(tmp_path: Path, corpus: Path) -> None:
    result = _cli("tokenizer", "train", str(corpus), "-o", str(tmp_path / "tok"),
                  "--vocab", "1024", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "tokens per note (validation):" in result.stdout
    info = json.loads((tmp_path / "tok" / "tokenizer-info.json").read_text())
    loaded = tok_mod.load_tokenizer(tmp_path / "tok")
    stats = tok_mod.corpus_tokens_per_note(loaded, corpus, "val")
    assert info["tokens_per_note_val"] == pytest.approx(stats.tokens_per_note)
    assert f"{stats.tokens_per_note:.3f}" in result.stdout


@pytest.mark.parametrize("vocab", ["1000", "8193"])
def test_vocab_out_of_range(tmp_path: Path, corpus: Path, vocab: str) -> None:
    result = _cli("tokenizer", "train", str(corpus), "-o", str(tmp_path / "t"), "--vocab", vocab)
    assert result.returncode != 0
    assert result.stderr.strip() == \
        f"midicopilot: error: --vocab must be between 1024 and 8192, not {vocab}"


def test_missing_and_empty_corpus(tmp_path: Path, corpus: Path) -> None:
    result = _cli("tokenizer", "train", str(tmp_path / "nothing"), "-o", str(tmp_path / "t"))
    assert result.returncode != 0
    assert result.stderr.strip().startswith("midicopilot: error:")
    assert "no such corpus folder" in result.stderr and len(result.stderr.splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = json.loads((corpus / "corpus.json").read_text())
    manifest["counts"] = {"train": {}, "val": {}}
    (empty / "corpus.json").write_text(json.dumps(manifest))
    (empty / "train.jsonl").write_text("")
    (empty / "val.jsonl").write_text("")
    result = _cli("tokenizer", "train", str(empty), "-o", str(tmp_path / "t"))
    assert result.returncode != 0
    assert result.stderr.strip() == \
        f"midicopilot: error: {empty}: the corpus has no training examples"
