"""The engine's smaller weight formats on the shipped demo bundle's validation chorales (music it
never trained on): Q8_0 and f16 give the same next token as f32 almost everywhere, at almost the
same loss (issue: ≥ 99 % top-1 agreement, mean NLL within 1 %). Speed is in docs/BENCHMARKS.md."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from midicopilot.train import corpus as corpus_mod
from midicopilot.train import events as ev
from midicopilot.train.music21_midi import export_by_name
from midicopilot.train.tokenizer import load_tokenizer
from midicopilot.train.windows import make_windows

BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "demo"


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> Path:
    """The windows of 8 validation chorales, soprano on channel 0, cut as training cuts them."""
    meta = json.loads((BUNDLE / "midicopilot.json").read_text())
    tok = load_tokenizer(BUNDLE / "tokenizer.json")
    params = ev.LanguageParams.from_dict(meta["params"])
    texts = []
    for name in meta["validation_pieces"]:
        piece = ev.read_piece(export_by_name(name), params)
        soprano = [s for s in corpus_mod.piece_parts(piece) if piece.part_names[s] == "Soprano"]
        if soprano:  # a few chorales name their top part otherwise (Trumpet 1, …)
            texts.append(corpus_mod.target_example(piece, params, "chorale", soprano[0],
                                                   entry_beats=0).text)
        if len(texts) == 8:
            break
    w = make_windows(texts, tok, int(meta["context_length"]), header=True, eos=True)
    pad = tok.token_to_id("[PAD]")
    path = tmp_path_factory.mktemp("windows") / "windows.jsonl"
    with path.open("w") as f:
        for ids, head in zip(w.ids, w.header, strict=True):
            f.write(json.dumps({"ids": [int(i) for i in ids if int(i) != pad],
                                "header": int(head)}) + "\n")
    return path


def score(engine_bin: Path, windows: Path, weights: str,
          stepwise: bool = False) -> tuple[list[int], float, int]:
    out = subprocess.run([str(engine_bin), "score", "--bundle", str(BUNDLE), str(windows),
                          "--top1", "--weights", weights, *(["--stepwise"] * stepwise)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    tokens = sum(r["tokens"] for r in rows)
    return [t for r in rows for t in r["top1"]], sum(r["nll"] for r in rows) / tokens, tokens


@pytest.mark.parametrize("stepwise", [False, True], ids=["one-pass", "stepwise"])
@pytest.mark.parametrize("weights, agree, nll_within", [("q8", 0.99, 0.01), ("f16", 0.995, 0.002)])
def test_smaller_weights_predict_like_f32(engine_bin, windows, weights, agree, nll_within,
                                          stepwise):
    """One pass is a prefill's path; stepwise, one token at a time through the KV cache, is a
    decode step's (on the engine's kernels: int8 activations against Q8_0, an f16 cache)."""
    top_f32, nll_f32, n = score(engine_bin, windows, "f32", stepwise)
    top, nll, m = score(engine_bin, windows, weights, stepwise)
    assert n == m > 3000
    same = sum(a == b for a, b in zip(top_f32, top, strict=True)) / n
    assert same >= agree, f"{weights}: top-1 agrees with f32 on {same:.4f} of {n} positions"
    assert abs(nll / nll_f32 - 1) <= nll_within, (nll, nll_f32)
    # The model is a model: the loss is far below the bundle's unigram baseline's.
    assert nll_f32 < 3.0


def test_stepwise_scores_what_one_pass_scores(engine_bin, windows):
    """The decode path (one token at a time) and the prefill path give one model: with f32
    weights the same loss and the same next tokens."""
    top_pass, nll_pass, n = score(engine_bin, windows, "f32")
    top_step, nll_step, m = score(engine_bin, windows, "f32", stepwise=True)
    assert n == m
    assert abs(nll_step / nll_pass - 1) < 1e-4
    assert sum(a == b for a, b in zip(top_pass, top_step, strict=True)) / n > 0.999
