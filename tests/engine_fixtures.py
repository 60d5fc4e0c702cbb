"""Small random model bundles for the engine's tests and benchmarks, made with the real libraries.

`make_random_bundle` writes the folder the training side exports (see the bundle contract in
engine/src/bundle.rs): a random-init transformers `Olmo2ForCausalLM` saved as `model.safetensors`
and `config.json`, a real ByteLevel BPE `tokenizer.json` trained with Hugging Face `tokenizers` on
event text shaped like docs/FORMAT.md, and `midicopilot.json`. The model's vocabulary is the
tokenizer's size, so ids line up exactly as in an exported bundle.

Also runnable: `python tests/engine_fixtures.py OUT --hidden-size 768 --layers 12 ...` (the
benchmark in docs/BENCHMARKS.md is made this way).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[EOS]"]
META_TOKENS = ["[GENRE_CHORALE]", "[GENRE_BLUES]", "[PART_SOPRANO]", "[PART_BASS]"]


def _event_lines(n_lines: int, rng: random.Random) -> list[str]:
    """Random but well-formed v1 event text: time words (grid + offset) and instant words."""
    lines = []
    for _ in range(n_lines):
        words: list[str] = [rng.choice(META_TOKENS[:2]), rng.choice(META_TOKENS[2:])]
        sounding: set[tuple[int, int]] = set()
        for _ in range(rng.randint(8, 40)):
            grid = rng.choice([0, 12, 24, 36, 48, 96])
            offset = rng.choice([0, 0, 0, 1, 2, 3, 6, 8])
            if grid:
                words.append(f"P_{grid}")
            if offset:
                words.append(f"P_{offset}")
            offs = sorted(rng.sample(sorted(sounding), k=min(len(sounding), rng.randint(0, 2))))
            for item in offs:
                sounding.discard(item)
            ons = set()
            for _ in range(rng.randint(0 if offs else 1, 3)):
                ch, pitch = rng.randint(0, 3), rng.randint(36, 84)
                if (ch, pitch) not in sounding:
                    ons.add((ch, pitch))
            sounding |= ons
            items = [f"{ch:x}-{p:03d}" for ch, p in offs]
            items += [f"{ch:x}+{p:03d}{'abcdefgh'[rng.randint(0, 7)]}" for ch, p in sorted(ons)]
            if items:
                words.append("".join(items))
        lines.append(" ".join(words))
    return lines


def make_tokenizer(vocab_size: int, seed: int = 0, n_lines: int | None = None):
    """A real ByteLevel BPE tokenizer trained on event text; [PAD]=0, [EOS]=1, then META_TOKENS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(seed)
    lines = _event_lines(n_lines or max(200, vocab_size * 2), rng)
    tok = Tokenizer(models.BPE())
    # Words are split at spaces (the space joins the next word, so decoding restores the text) and
    # never merged across; inside a word, byte-level BPE merges freely.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(" ", behavior="merged_with_next"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + META_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    return tok


def make_random_bundle(
    path: str | Path,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int = 0,
    *,
    intermediate_size: int | None = None,
    tie_word_embeddings: bool = False,
    rope_theta: float = 10000.0,
    legacy_rope_theta: bool = False,
    max_position_embeddings: int = 1024,
    dtype: str = "float32",
    init_std: float = 0.08,
    context_length: int = 512,
) -> Path:
    """Write a random OLMo2 bundle to `path` (created) and return it.

    `vocab_size` is the BPE target; the model's vocabulary is padded/set to the tokenizer's real
    size. `legacy_rope_theta` writes `rope_theta` at the top level of config.json (transformers 4.x
    style) instead of inside `rope_parameters` (5.x). Norm weights are randomised around 1 so a
    forward pass that skips or misplaces a norm cannot match. `dtype` is the on-disk dtype
    ("float32" or "bfloat16").
    """
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(vocab_size, seed)
    tok.save(str(path / "tokenizer.json"))
    n_vocab = tok.get_vocab_size(with_added_tokens=True)
    pad_id, eos_id = tok.token_to_id("[PAD]"), tok.token_to_id("[EOS]")

    torch.manual_seed(seed)
    config = Olmo2Config(
        vocab_size=n_vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_theta": rope_theta, "rope_type": "default"},
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=init_std,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    model = Olmo2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    elif dtype != "float32":
        raise ValueError(f"dtype must be float32 or bfloat16, not {dtype}")
    model.save_pretrained(path)
    for extra in ("generation_config.json",):
        (path / extra).unlink(missing_ok=True)

    if legacy_rope_theta:
        cfg = json.loads((path / "config.json").read_text())
        cfg.pop("rope_parameters", None)
        cfg["rope_theta"] = rope_theta
        cfg["rope_scaling"] = None
        (path / "config.json").write_text(json.dumps(cfg, indent=2))

    meta = {
        "format": "midicopilot-bundle",
        "bundle_version": 1,
        "event_language": "v1",
        "params": {"ticks_per_quarter": 24, "velocity_bins": 8},
        "meta_tokens": META_TOKENS,
        "pad_token": "[PAD]",
        "eos_token": "[EOS]",
        "vocab_size": n_vocab,
        "context_length": context_length,
        "note": "random weights made by tests/engine_fixtures.py",
    }
    (path / "midicopilot.json").write_text(json.dumps(meta, indent=2))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--hidden-size", type=int, default=768)
    ap.add_argument("--intermediate-size", type=int, default=3072)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=12)
    ap.add_argument("--max-position-embeddings", type=int, default=2048)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = make_random_bundle(
        a.out, vocab_size=a.vocab_size, hidden_size=a.hidden_size, layers=a.layers,
        heads=a.heads, kv_heads=a.kv_heads, seed=a.seed, intermediate_size=a.intermediate_size,
        max_position_embeddings=a.max_position_embeddings, dtype=a.dtype, init_std=0.02,
    )
    print(out)


if __name__ == "__main__":
    main()
