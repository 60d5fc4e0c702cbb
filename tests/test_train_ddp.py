"""The same `train` entry under torchrun: two CPU processes, DDP over gloo."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from midicopilot.train import config as config_mod
from midicopilot.train import corpus as corpus_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train import trainer
from midicopilot.train.music21_midi import package_midi_files

SETS = [
    "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
    "model.tiny.num_hidden_layers=2", "model.tiny.num_attention_heads=2",
    "model.tiny.num_key_value_heads=2", "lora.r=4", "lora.dropout=0", "data.context_length=64",
    "train.max_steps=3", "train.warmup_steps=1", "train.lr=0.01", "train.eval_every=0",
    "train.checkpoint_every=10", "train.eval_windows=8", "train.save_rank_states=true",
]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_ranks_agree_and_match_one_process(tmp_path: Path) -> None:
    corpus_mod.build_corpus(package_midi_files()[:12], tmp_path / "corpus", val_fraction=0.2,
                            progress=False)
    tok_mod.save_tokenizer(tok_mod.train_tokenizer([tmp_path / "corpus"], 1024, progress=False),
                           tmp_path / "tok")
    # two processes with 2 windows each = one process with 2 micro-batches of 2 (same windows)
    ddp_sets = [*SETS, "train.batch_size=2", "train.grad_accum=1"]
    args = [arg for item in ddp_sets for arg in ("--set", item)]
    result = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "midicopilot.host.cli",
         "train", "--phase", "align", "--corpus", str(tmp_path / "corpus"), "--tokenizer",
         str(tmp_path / "tok"), "-o", str(tmp_path / "ddp"), "--quiet", "--set",
         "train.device=cpu", *args],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es) on cpu" in result.stderr
    rank0 = load_file(str(tmp_path / "ddp" / "rank-states" / "rank-0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "rank-states" / "rank-1.safetensors"))
    assert rank0.keys() == rank1.keys() and len(rank0) > 10
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0)

    # the weights moved, and they are what one process computes on the same global batches
    base = load_file(str(tmp_path / "ddp" / "base" / "model.safetensors"))
    embed = next(v for n, v in rank0.items() if "embed_tokens.modules_to_save" in n)
    assert not torch.allclose(embed, base["model.embed_tokens.weight"])
    one_sets = [*SETS, "train.batch_size=2", "train.grad_accum=2", "train.save_rank_states=false"]
    single = trainer.train(config_mod.resolve("tiny", "align", one_sets), tmp_path / "one",
                           tmp_path / "corpus", tmp_path / "tok", progress=False,
                           log=lambda m: None)
    one = load_file(str(trainer.find_checkpoint(single.run) / "trainable.safetensors"))
    for name in rank0:
        torch.testing.assert_close(rank0[name], one[name], rtol=1e-4, atol=1e-5)
    ddp_losses = [m["loss"] for m in trainer.read_metrics(tmp_path / "ddp") if "loss" in m]
    one_losses = [m["loss"] for m in trainer.read_metrics(single.run) if "loss" in m]
    assert ddp_losses == pytest.approx(one_losses, rel=1e-5)
