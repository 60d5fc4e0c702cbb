"""Export a checkpoint as a model bundle: the contract between training and the Rust engine.

    BUNDLE/
      model.safetensors   merged weights (LoRA folded in; embed_tokens and lm_head trained)
      config.json         transformers Olmo2Config; vocab_size = tokenizer size
      tokenizer.json      the MIDI tokenizer
      midicopilot.json    format, event language and its parameters, metadata tokens, training

The bundle is written beside its destination and renamed into place; an existing bundle folder is
an error unless `force`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from midicopilot.train import model as model_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train import trainer
from midicopilot.train.checkpoints import (
    find_checkpoint,
    load_tensors,
    read_json,
    run_of_checkpoint,
)
from midicopilot.train.config import RunConfig
from midicopilot.train.windows import load_windows, unigram_counts

BUNDLE_FORMAT = "midicopilot-bundle"
BUNDLE_VERSION = 1
BUNDLE_FILES = ("model.safetensors", "config.json", "tokenizer.json", "midicopilot.json")


class ExportError(RuntimeError):
    """A bundle that cannot be written. `str(err)` is one line."""


def load_trained(checkpoint: Path | str, merged: bool = True):
    """(model, tokenizer, config, checkpoint folder) of a checkpoint or run folder; the model has
    its adapters merged unless `merged` is False. Always a full-precision base (no quantization)."""
    ckpt = find_checkpoint(checkpoint)
    run = run_of_checkpoint(ckpt)
    info = read_json(run / "run.json")
    cfg = RunConfig.from_dict(info["config"])
    cfg.model.quantize = ""  # merge into the full-precision base, never into 4/8-bit weights
    tokenizer = tok_mod.load_tokenizer(run / tok_mod.TOKENIZER_FILE)
    base = model_mod.build_base(cfg.model, tokenizer.get_vocab_size(),
                                tokenizer.token_to_id(tok_mod.PAD_TOKEN),
                                tokenizer.token_to_id(tok_mod.EOS_TOKEN),
                                saved_base=run / model_mod.BASE_DIR)
    model = model_mod.add_lora(base, cfg.lora, cfg.model)
    model_mod.load_trainable_state(model, load_tensors(ckpt / "trainable.safetensors"),
                                   source=str(ckpt))
    model.eval()
    if merged:
        model = model_mod.merge(model)
        model.eval()
    return model, tokenizer, cfg, ckpt


def bundle_metadata(ckpt: Path, tokenizer, cfg: RunConfig) -> dict[str, Any]:
    run = run_of_checkpoint(ckpt)
    info = read_json(run / "run.json")
    state = read_json(ckpt / "state.json")
    meta = tok_mod.meta_tokens(tokenizer)
    # the styles the model was trained to follow: headers of the phases that used them
    chain = [*info.get("history", []), trainer.phase_record(run, info, state)]
    used = sorted({t for p in chain if p.get("header") for t in p.get("meta_tokens", [])})
    tokenizer_info_path = Path(info["tokenizer_source"])
    if not tokenizer_info_path.is_dir():
        tokenizer_info_path = tokenizer_info_path.parent
    tokenizer_info = {}
    if (tokenizer_info_path / "tokenizer-info.json").exists():
        tokenizer_info = json.loads((tokenizer_info_path / "tokenizer-info.json").read_text())
    pad_id = tokenizer.token_to_id(tok_mod.PAD_TOKEN)
    unigram = unigram_counts(load_windows(run, "train"),
                             tokenizer.get_vocab_size(), pad_id)
    return {
        "format": BUNDLE_FORMAT,
        "bundle_version": BUNDLE_VERSION,
        "event_language": info["corpus_manifest"]["event_language"],
        "params": info["corpus_manifest"]["params"],
        "meta_tokens": meta,
        "genres": [t for t in used if t.startswith("[GENRE_")],
        "parts": [t for t in used if t.startswith("[PART_")],
        "pad_token": tok_mod.PAD_TOKEN,
        "eos_token": tok_mod.EOS_TOKEN,
        "vocab_size": tokenizer.get_vocab_size(),
        "context_length": cfg.data.context_length,
        "validation_pieces": validation_pieces(Path(info["corpus"])),
        # the engine writes the band's velocities as the nearest of these (docs/ENGINE.md)
        "band_velocities": band_velocities(Path(info["corpus"])),
        # how often each token is a target in the training windows: eval's unigram baseline
        "unigram": [int(c) for c in unigram],
        "base_model": cfg.model.base,
        "training": {
            "phases": chain,
            "checkpoint": str(ckpt.resolve()),
            "step": state["step"],
            "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha,
                     "target_modules": cfg.lora.target_modules,
                     "modules_to_save": cfg.lora.modules_to_save},
            "tokenizer": tokenizer_info,
        },
    }


def band_velocities(corpus: Path) -> str:
    """The velocity letters of the band's note-ons in the corpus's training examples, sorted
    (`"f"` for music21's exports, which carry no dynamics); empty when the corpus is gone. A
    model only reads a band item's pitch in the velocity letters it was trained on (BPE makes
    `1+067h` and `1+067f` different tokens), so the engine writes the band's velocities as the
    nearest of these."""
    letters: set[str] = set()
    try:
        with open(corpus / "train.jsonl", encoding="utf-8") as f:
            for line in f:
                letters.update(_band_letters(json.loads(line)["text"]))
    except (OSError, ValueError, KeyError):
        return ""
    return "".join(sorted(letters))


def _band_letters(text: str) -> set[str]:
    """The velocity letters of a text's band note-ons: instant words are runs of fixed-width
    items, `c-ppp` (off) and `c+pppv` (on; docs/FORMAT.md)."""
    out = set()
    for word in text.split(" "):
        if word.startswith(("P_", "[")):
            continue
        i = 0
        while i + 5 <= len(word):
            if word[i + 1] == "-":
                i += 5
                continue
            if word[i] != "0" and i + 6 <= len(word):
                out.add(word[i + 5])
            i += 6
    return out


def validation_pieces(corpus: Path) -> list[str]:
    """The corpus's validation pieces, as music21 names (`bach/bwv108.6`) where they are music21
    exports, else file names; empty when the corpus folder is gone."""
    from midicopilot.train import corpus as corpus_mod
    from midicopilot.train.music21_midi import music21_name

    try:
        val = corpus_mod.load_manifest(corpus)["split"]["val"]
    except corpus_mod.CorpusError:
        return []
    return [music21_name(p) or Path(p).name for p in val]


def export_bundle(checkpoint: Path | str, out: Path | str, force: bool = False,
                  dtype: str | None = None) -> Path:
    """Merge a checkpoint's adapters and write the bundle folder `out`."""
    import torch

    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists: pass --force to replace it")
    model, tokenizer, cfg, ckpt = load_trained(checkpoint)
    dtype = dtype or cfg.export.dtype
    model = model.to(model_mod.torch_dtype(dtype))
    model.config.vocab_size = tokenizer.get_vocab_size()
    model.config.pad_token_id = tokenizer.token_to_id(tok_mod.PAD_TOKEN)
    model.config.eos_token_id = tokenizer.token_to_id(tok_mod.EOS_TOKEN)
    model.config.bos_token_id = None
    model.config.use_cache = True
    if model.get_input_embeddings().weight.shape[0] != tokenizer.get_vocab_size():
        raise ExportError("internal: embedding rows differ from the tokenizer's vocabulary")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with torch.no_grad():
            model.save_pretrained(tmp, safe_serialization=True, max_shard_size="1000GB")
        for extra in tmp.iterdir():
            if extra.name not in BUNDLE_FILES:
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        if not (tmp / "model.safetensors").exists():
            raise ExportError("internal: save_pretrained did not write model.safetensors")
        _add_legacy_config_keys(tmp / "config.json")
        tokenizer.save(str(tmp / tok_mod.TOKENIZER_FILE))
        meta = bundle_metadata(ckpt, tokenizer, cfg)
        meta["dtype"] = dtype
        if cfg.export.defaults:
            meta["defaults"] = cfg.export.defaults
        (tmp / "midicopilot.json").write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _add_legacy_config_keys(path: Path) -> None:
    """transformers 5 nests rope_theta in rope_parameters; readers of the older layout (candle's
    OLMo2 config, transformers 4) look for it at the top level, so write both."""
    config = json.loads(path.read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    if "torch_dtype" not in config and "dtype" in config:
        config["torch_dtype"] = config["dtype"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_bundle(bundle: Path | str) -> dict[str, Any]:
    """midicopilot.json of a bundle folder, checked for the files and format."""
    bundle = Path(bundle)
    missing = [f for f in BUNDLE_FILES if not (bundle / f).exists()]
    if missing:
        raise ExportError(f"{bundle}: not a model bundle (no {missing[0]})")
    meta = json.loads((bundle / "midicopilot.json").read_text())
    if meta.get("format") != BUNDLE_FORMAT:
        raise ExportError(f"{bundle}/midicopilot.json: not a midicopilot bundle")
    return meta
