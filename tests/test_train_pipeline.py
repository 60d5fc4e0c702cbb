"""The whole training chain for real, on a tiny model and real MIDI files:
corpus → tokenizer → align → style → kill -9 and resume → export → reload and compare logits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from midicopilot.train import config as config_mod
from midicopilot.train import corpus as corpus_mod
from midicopilot.train import export as export_mod
from midicopilot.train import model as model_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train import trainer
from midicopilot.train.music21_midi import bach_chorales, package_midi_files
from midicopilot.train.windows import cut_windows

# A model of ~0.1M parameters and runs of a few seconds: the chain, not the music, is under test.
TEST_SETS = [
    "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
    "model.tiny.num_hidden_layers=2", "model.tiny.num_attention_heads=2",
    "model.tiny.num_key_value_heads=2", "lora.r=4", "lora.dropout=0", "data.context_length=64",
    "train.batch_size=4", "train.max_steps=24", "train.warmup_steps=2", "train.lr=0.005",
    "train.eval_every=8", "train.checkpoint_every=8", "train.eval_windows=16", "train.threads=1",
]


def _sets(*extra: str) -> list[str]:
    return [*TEST_SETS, *extra]


def _set_args(sets: list[str]) -> list[str]:
    return [arg for item in sets for arg in ("--set", item)]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("midicopilot:")]
    assert len(lines) == 1 and lines[0].startswith("midicopilot: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    corpus_mod.build_corpus(package_midi_files(), root / "align", val_fraction=0.1, seed=0,
                            progress=False)
    corpus_mod.build_corpus(bach_chorales()[:6], root / "style", genre="chorale",
                            transpose=True, val_fraction=0.34, seed=0, progress=False)
    tok = tok_mod.train_tokenizer([root / "align", root / "style"], 1024, progress=False)
    tok_mod.save_tokenizer(tok, root / "tok")
    return {"root": root, "align": root / "align", "style": root / "style",
            "tok": root / "tok"}


@pytest.fixture(scope="module")
def align_run(data: dict[str, Path]) -> Path:
    cfg = config_mod.resolve("tiny", "align", _sets())
    result = trainer.train(cfg, data["root"] / "run-align", data["align"], data["tok"],
                           progress=False, log=lambda m: None)
    assert result.steps == 24
    return result.run


@pytest.fixture(scope="module")
def style_run(data: dict[str, Path], align_run: Path) -> Path:
    cfg = config_mod.resolve("tiny", "style", _sets())
    result = trainer.train(cfg, data["root"] / "run-style", data["style"], data["tok"],
                           init_from=align_run, progress=False, log=lambda m: None)
    return result.run


def _losses(run: Path) -> list[float]:
    return [m["loss"] for m in trainer.read_metrics(run) if "loss" in m]


def _eval_losses(run: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["eval_loss"]) for m in trainer.read_metrics(run) if "eval_loss" in m]


# --- the two phases ---------------------------------------------------------------------------

def test_align_phase_learns(align_run: Path) -> None:
    losses, evals = _losses(align_run), _eval_losses(align_run)
    info = json.loads((align_run / "run.json").read_text())
    assert len(losses) == 24 and [s for s, _ in evals] == [8, 16, 24]
    vocab = tok_mod.load_tokenizer(align_run / "tokenizer.json").get_vocab_size()
    assert losses[0] == pytest.approx(np.log(vocab), abs=0.5)  # a fresh model guesses
    assert evals[-1][1] < evals[0][1] < np.log(vocab)
    summary = json.loads((align_run / "summary.json").read_text())
    assert summary["eval_loss"] == pytest.approx(evals[-1][1])
    assert 0 < info["unigram_loss"] < np.log(vocab)
    # embed_tokens and lm_head trained in full, LoRA on q/k/v/o, the rest frozen
    from safetensors.torch import load_file

    state = load_file(str(trainer.find_checkpoint(align_run) / "trainable.safetensors"))
    names = list(state)
    assert any("embed_tokens.modules_to_save" in n for n in names)
    assert any("lm_head.modules_to_save" in n for n in names)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert any(f"{proj}.lora_A" in n for n in names)
    assert not any("original_module" in n or "q_proj.base_layer" in n for n in names)
    embed = next(v for n, v in state.items() if "embed_tokens.modules_to_save" in n)
    assert embed.shape[0] == vocab


def test_windows(align_run: Path, style_run: Path) -> None:
    tok = tok_mod.load_tokenizer(style_run / "tokenizer.json")
    genre = tok.token_to_id("[GENRE_CHORALE]")
    parts = {tok.token_to_id(t) for t in tok_mod.meta_tokens(tok) if t.startswith("[PART_")}
    ids = np.load(style_run / "data" / "train-ids.npy")
    header = np.load(style_run / "data" / "train-header.npy")
    assert ids.shape[1] == 64 and len(ids) == len(header) > 100
    assert (header == 3).all()  # [GENRE_CHORALE] Ġ [PART_…]
    assert (ids[:, 0] == genre).all() and all(int(p) in parts for p in ids[:, 2])
    token_of = {i: t for t, i in tok.get_vocab().items()}
    # every window's body starts at a word and ends at a word boundary (or [EOS]/padding)
    for row in ids[:200]:
        assert token_of[int(row[3])].startswith("Ġ")
    # the first window of the first example is exactly the tokenized text (what the engine does)
    first = next(corpus_mod.corpus_texts(json.loads((style_run / "run.json").read_text())
                                         ["corpus"], "train"))
    full = tok.encode(first, add_special_tokens=False).ids
    used = int((ids[0] != 0).sum())
    assert 64 - 16 < used <= 64 and (ids[0][used:] == 0).all()  # cut at a word: padded
    assert list(ids[0][:used]) == full[:used] and token_of[full[used]].startswith("Ġ")
    align_ids = np.load(align_run / "data" / "train-ids.npy")
    align_header = np.load(align_run / "data" / "train-header.npy")
    assert (align_header == 0).all()
    assert not np.isin(align_ids[:, 0], list(parts | {genre})).any()


def test_cut_windows_cover_the_text_at_word_boundaries() -> None:
    word_start = np.zeros(50, dtype=bool)
    word_start[[1, 2]] = True  # tokens 1 and 2 start words; 3 continues one
    body = np.array([1, 3, 3, 2, 3, 1, 2, 3, 3, 3, 1, 3, 2, 1, 3, 3, 2, 3, 3, 1], dtype=np.int64)
    windows = cut_windows([40, 41], body, word_start, context_length=11)
    assert len(windows) >= 2
    assert all(len(w) <= 11 and list(w[:2]) == [40, 41] for w in windows)
    bodies = [list(w[2:]) for w in windows]
    assert all(word_start[b[0]] for b in bodies)
    joined = [t for b in bodies[:-1] for t in b]
    assert joined == list(body[:len(joined)])
    # the last window ends the text, is full-sized and starts at a word (overlap allowed)
    assert bodies[-1] == list(body[-len(bodies[-1]):]) and len(bodies[-1]) >= 4
    assert len(joined) + len(bodies[-1]) >= len(body)


def test_style_starts_from_align(align_run: Path, style_run: Path) -> None:
    info = json.loads((style_run / "run.json").read_text())
    assert Path(info["init_from"]) == trainer.find_checkpoint(align_run).resolve()
    assert [p["phase"] for p in info["history"]] == ["align"]
    # the style run's first loss is the align model's loss on the style run's first batch
    model, _, cfg, _ = export_mod.load_trained(align_run, merged=False)
    ids = np.load(style_run / "data" / "train-ids.npy")
    header = np.load(style_run / "data" / "train-header.npy")
    batch = trainer.Sampler(len(ids), cfg.train.seed).take(cfg.train.batch_size)
    x = torch.from_numpy(ids[batch].astype(np.int64))
    labels = trainer.targets_of(x, torch.from_numpy(header[batch].astype(np.int64)), 0)
    with torch.no_grad():
        logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)
    assert _losses(style_run)[0] == pytest.approx(float(loss), rel=1e-5)
    assert _eval_losses(style_run)[-1][1] < _eval_losses(style_run)[0][1]


# --- kill -9 and resume -----------------------------------------------------------------------

def test_kill_and_resume_continue_the_same_loss_sequence(data: dict[str, Path],
                                                         tmp_path: Path) -> None:
    # dropout on: the RNG state must be restored too
    sets = _sets("train.max_steps=60", "train.checkpoint_every=5", "train.eval_every=20",
                 "lora.dropout=0.1")
    cfg = config_mod.resolve("tiny", "align", sets)
    straight = trainer.train(cfg, tmp_path / "straight", data["align"], data["tok"],
                             progress=False, log=lambda m: None).run

    killed = tmp_path / "killed"
    args = ["train", "--phase", "align", "--corpus", str(data["align"]), "--tokenizer",
            str(data["tok"]), "-o", str(killed), "--quiet", *_set_args(sets)]
    proc = subprocess.Popen([sys.executable, "-m", "midicopilot.host.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-00000010").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = trainer.checkpoint_dirs(killed)
    last = int(done[-1].name.split("-")[1])
    assert 10 <= last < 60
    logged = max(m["step"] for m in trainer.read_metrics(killed))
    assert logged - last < 5 + 1  # lost at most the steps since the last checkpoint

    result = _cli(*args, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming {killed} from step {last}" in result.stderr
    assert _losses(killed) == pytest.approx(_losses(straight), rel=1e-5, abs=1e-6)
    assert len(_losses(killed)) == 60
    steps, evals = zip(*_eval_losses(killed), strict=True)
    assert steps == (20, 40, 60)
    assert evals == pytest.approx([e for _, e in _eval_losses(straight)], rel=1e-5)
    from safetensors.torch import load_file

    a = load_file(str(trainer.find_checkpoint(straight) / "trainable.safetensors"))
    b = load_file(str(trainer.find_checkpoint(killed) / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    # only whole checkpoints, the newest two
    assert [p.name for p in trainer.checkpoint_dirs(killed)] == ["step-00000055", "step-00000060"]
    assert not list((killed / "checkpoints").glob(".tmp-*"))


def test_resume_with_another_config_is_one_line(data: dict[str, Path], align_run: Path) -> None:
    args = ["train", "--phase", "align", "-o", str(align_run), "--resume", "--quiet",
            *_set_args(_sets("lora.r=8"))]
    line = _one_error_line(_cli(*args))
    assert "another config (lora.r: 4 there, 8 now)" in line


def test_new_run_into_existing_folder_is_one_line(data: dict[str, Path], align_run: Path) -> None:
    line = _one_error_line(_cli("train", "--phase", "align", "-o", str(align_run), "--corpus",
                                str(data["align"]), "--tokenizer", str(data["tok"]),
                                *_set_args(_sets())))
    assert "already holds a run" in line


def test_init_from_another_config_is_one_line(data: dict[str, Path], align_run: Path,
                                              tmp_path: Path) -> None:
    line = _one_error_line(_cli(
        "train", "--phase", "style", "-o", str(tmp_path / "s"), "--corpus", str(data["style"]),
        "--tokenizer", str(data["tok"]), "--init-from", str(align_run),
        *_set_args(_sets("model.tiny.hidden_size=64"))))
    assert "another config (model.tiny.hidden_size: 32 there, 64 now)" in line


@pytest.mark.parametrize("extra, message", [
    (["--corpus", "/nonexistent/corpus"], "no such corpus folder"),
    (["--quantize", "8bit", "--base", "allenai/OLMo-2-0425-1B"], "needs a CUDA GPU"),
    (["--set", "train.lr=fast"], "train.lr must be float"),
])
def test_train_bad_input_is_one_line(data: dict[str, Path], tmp_path: Path, extra: list[str],
                                     message: str) -> None:
    if torch.cuda.is_available() and "--quantize" in extra:
        pytest.skip("this machine has CUDA")
    args = ["train", "--phase", "align", "-o", str(tmp_path / "r"), "--corpus",
            str(data["align"]), "--tokenizer", str(data["tok"]), *extra]
    assert message in _one_error_line(_cli(*args))


# --- export -----------------------------------------------------------------------------------

def test_export_bundle_and_reload_logits(style_run: Path, data: dict[str, Path],
                                         tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    bundle = tmp_path / "bundle"
    result = _cli("export", str(style_run), "-o", str(bundle))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in bundle.iterdir()) == sorted(export_mod.BUNDLE_FILES)
    meta = json.loads((bundle / "midicopilot.json").read_text())
    tok = tok_mod.load_tokenizer(bundle / "tokenizer.json")
    config = json.loads((bundle / "config.json").read_text())
    assert meta["format"] == "midicopilot-bundle" and meta["bundle_version"] == 1
    assert meta["event_language"] == "v1"
    assert meta["params"] == {"ticks_per_quarter": 24, "velocity_bins": 8}
    assert meta["vocab_size"] == tok.get_vocab_size() == config["vocab_size"]
    assert meta["pad_token"] == "[PAD]" and meta["eos_token"] == "[EOS]"
    assert (config["pad_token_id"], config["eos_token_id"]) == (0, 1)
    assert config["model_type"] == "olmo2" and config["rope_theta"] == 10000.0
    assert meta["context_length"] == 64 and meta["base_model"] == "tiny"
    # music21's exports carry no dynamics: the band was only ever heard at one velocity
    assert meta["band_velocities"] == "f"
    assert meta["genres"] == ["[GENRE_CHORALE]"]
    assert "[PART_SOPRANO]" in meta["parts"] and set(meta["parts"]) <= set(meta["meta_tokens"])
    assert meta["meta_tokens"] == tok_mod.meta_tokens(tok)
    phases = meta["training"]["phases"]
    assert [p["phase"] for p in phases] == ["align", "style"]
    assert all(p["eval_loss"] < np.log(meta["vocab_size"]) for p in phases)
    with safe_open(str(bundle / "model.safetensors"), "pt") as f:
        names = list(f.keys())
        assert {f.get_tensor(n).dtype for n in names} == {torch.float32}
        assert f.get_tensor("model.embed_tokens.weight").shape[0] == meta["vocab_size"]
    assert not any("lora" in n or "modules_to_save" in n for n in names)

    merged, tokenizer, _, _ = export_mod.load_trained(style_run)
    unmerged, _, _, _ = export_mod.load_trained(style_run, merged=False)
    reloaded = AutoModelForCausalLM.from_pretrained(bundle).eval()
    text = next(corpus_mod.corpus_texts(data["style"], "val"))
    ids = torch.tensor([tokenizer.encode(text).ids[:64]])
    with torch.no_grad():
        a = reloaded(input_ids=ids).logits
        b = merged(input_ids=ids).logits
        c = unmerged(input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)  # merging changed nothing
    assert float((a - a.mean()).abs().mean()) > 0.01  # not a constant

    # an existing bundle folder is refused, unless --force
    assert "already exists: pass --force" in _one_error_line(
        _cli("export", str(style_run), "-o", str(bundle)))
    result = _cli("export", str(style_run), "-o", str(bundle), "--force", "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    with safe_open(str(bundle / "model.safetensors"), "pt") as f:
        assert f.get_tensor("lm_head.weight").dtype == torch.bfloat16


def test_export_of_a_folder_without_checkpoint_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(_cli("export", str(tmp_path), "-o", str(tmp_path / "b")))
    assert "neither a run folder nor a checkpoint" in line


# --- a pretrained base from a local folder ----------------------------------------------------

def test_pretrained_base_from_a_local_folder(data: dict[str, Path], tmp_path: Path) -> None:
    """A base with another (English-sized) vocabulary is resized to the MIDI one and trained."""
    from transformers import Olmo2Config, Olmo2ForCausalLM

    english = Olmo2ForCausalLM(Olmo2Config(
        vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, pad_token_id=1, eos_token_id=2999,
        tie_word_embeddings=False))
    english.save_pretrained(tmp_path / "english")
    cfg = config_mod.resolve("tiny", "align", _sets(f"model.base={str(tmp_path / 'english')!r}",
                                                    "model.train_base_modules=[]",
                                                    "train.max_steps=4"))
    result = trainer.train(cfg, tmp_path / "run", data["align"], data["tok"], progress=False,
                           log=lambda m: None)
    assert not (tmp_path / "run" / "base").exists()  # the base is reloaded from its folder
    model, tokenizer, _, _ = export_mod.load_trained(result.run)
    assert model.config.vocab_size == tokenizer.get_vocab_size()
    assert (model.config.pad_token_id, model.config.eos_token_id) == (0, 1)
    frozen = model_mod.build_base(cfg.model, tokenizer.get_vocab_size())
    # the frozen MLP weights are the folder's own; the embeddings were resized and trained
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight,
                               english.model.layers[0].mlp.up_proj.weight)
    assert frozen.get_input_embeddings().weight.shape[0] == tokenizer.get_vocab_size()
    assert not torch.equal(model.get_input_embeddings().weight,
                           frozen.get_input_embeddings().weight)


def test_bfloat16_base_trains_under_autocast_and_exports(data: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """The GPU recipe's dtype path (bf16 frozen base, float32 trained weights, autocast), on CPU."""
    cfg = config_mod.resolve("tiny", "align", _sets("model.dtype='bfloat16'", "train.max_steps=4",
                                                    "export.dtype='bfloat16'"))
    result = trainer.train(cfg, tmp_path / "run", data["align"], data["tok"], progress=False,
                           log=lambda m: None)
    losses = _losses(result.run)
    assert len(losses) == 4 and all(np.isfinite(losses)) and np.isfinite(result.eval_loss)
    from safetensors.torch import load_file

    state = load_file(str(trainer.find_checkpoint(result.run) / "trainable.safetensors"))
    assert {v.dtype for v in state.values()} == {torch.float32}
    bundle = export_mod.export_bundle(result.run, tmp_path / "bundle")
    weights = load_file(str(bundle / "model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}
