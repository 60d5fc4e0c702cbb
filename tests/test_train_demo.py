"""The demo bundle command, scaled down (a few files, a few steps): built once, then reused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from midicopilot.train import demo
from midicopilot.train import export as export_mod

SETS = (
    "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
    "model.tiny.num_hidden_layers=2", "model.tiny.num_attention_heads=2",
    "model.tiny.num_key_value_heads=2", "lora.r=4", "data.context_length=64",
    "train.batch_size=4", "train.max_steps=6", "train.warmup_steps=1", "train.eval_every=3",
    "train.checkpoint_every=3", "train.eval_windows=8",
)


def _build(out: Path, logs: list[str]) -> Path:
    return demo.build_demo_bundle(out, progress=False, log=logs.append, sets=SETS,
                                  max_chorales=4, max_align_files=10, vocab_size=1024)


def test_demo_bundle_builds_then_is_reused(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    logs: list[str] = []
    bundle = _build(out, logs)
    meta = export_mod.read_bundle(bundle)
    assert meta["genres"] == ["[GENRE_CHORALE]"]
    assert {"[PART_SOPRANO]", "[PART_ALTO]", "[PART_TENOR]", "[PART_BASS]"} <= set(meta["parts"])
    assert [p["phase"] for p in meta["training"]["phases"]] == ["align", "style"]
    assert meta["demo"]["version"] == demo.DEMO_VERSION
    # Everything `midicopilot eval` needs to measure it on music it never trained on.
    style_val = json.loads((out.with_name("demo.work") / "corpus-style" / "corpus.json")
                           .read_text())["split"]["val"]
    assert meta["validation_pieces"] == [f"bach/{Path(p).stem.removeprefix('bach-')}"
                                         for p in style_val]
    assert meta["unseen_style_pieces"] and all(
        n.split("/")[0] in demo.UNSEEN_STYLE for n in meta["unseen_style_pieces"])
    assert len(meta["unigram"]) == meta["vocab_size"] and sum(meta["unigram"]) > 0
    assert meta["defaults"]["part"] == "SOPRANO" and meta["defaults"]["polyphony"]["SOPRANO"] == 1
    assert set(meta["demo"]["stage_seconds"]) >= {"style corpus", "align corpus", "tokenizer",
                                                  "align phase", "style phase", "export"}
    work = out.with_name("demo.work")
    style = json.loads((work / "corpus-style" / "corpus.json").read_text())
    align = json.loads((work / "corpus-align" / "corpus.json").read_text())
    # the chorales held out for the style phase's validation never reach the align phase
    held_out = set(style["split"]["val"])
    assert held_out and not held_out & set(align["split"]["train"] + align["split"]["val"])
    assert style["transpositions"] == list(range(-5, 7))

    stamp = (bundle / "model.safetensors").stat().st_mtime_ns
    again: list[str] = []
    assert _build(out, again) == bundle
    assert again == [f"{out}: finished demo bundle, reused"]
    assert (bundle / "model.safetensors").stat().st_mtime_ns == stamp

    # a demo interrupted after the align phase picks up from there
    (work / "run-style" / "summary.json").unlink()
    shutil.rmtree(work / "run-style" / "checkpoints" / "step-00000006")
    shutil.rmtree(bundle)
    resumed: list[str] = []
    _build(out, resumed)
    assert not any("corpus" in line or "tokenizer:" in line or "align phase" in line
                   for line in resumed)
    assert any(line.startswith("style phase") for line in resumed)
    assert any("resuming" in line and "from step 3" in line for line in resumed)
    assert export_mod.read_bundle(out)["training"]["step"] == 6
