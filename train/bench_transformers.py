"""The transformers side of `midicopilot-engine bench`: the same figures, on the same bundle.

    python -m midicopilot.train.bench_transformers --bundle B [--json] [--steps 32] [--repeats 3]

Decode ms/token at contexts 64, 256 and 512 (a `DynamicCache` already holding that many tokens when
the timed steps start), prefill ms for 256 and 512 tokens, load time and peak resident memory
(VmHWM). f32 on CPU, `torch.inference_mode`, the default attention implementation. The JSON keys
are the engine's, so the engine can print ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

DECODE_CONTEXTS = (64, 256, 512)
PREFILL_LENGTHS = (256, 512)


def sample_tokens(n: int, vocab: int) -> list[int]:
    """The engine's fixed pseudo-random walk (xorshift64), so both time the same ids."""
    mask = (1 << 64) - 1
    state = 0x9E3779B97F4A7C15
    out = []
    for _ in range(n):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        out.append(state % vocab)
    return out


def status_mib(key: str) -> float | None:
    """A figure from /proc/self/status in MiB (VmHWM, VmRSS, RssAnon)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def bench(bundle: Path, steps: int = 32, repeats: int = 3, threads: int | None = None) -> dict:
    import torch
    from transformers import DynamicCache, Olmo2ForCausalLM

    if threads:
        torch.set_num_threads(threads)

    start = time.perf_counter()
    model = Olmo2ForCausalLM.from_pretrained(bundle, dtype=torch.float32).eval()
    load_ms = (time.perf_counter() - start) * 1e3
    vocab = model.config.vocab_size
    max_pos = model.config.max_position_embeddings
    tokens = sample_tokens(max_pos, vocab)

    decode = {}
    prefill = {}
    with torch.inference_mode():
        for context in DECODE_CONTEXTS:
            context = min(context, max_pos - steps - 1)
            cache = DynamicCache(config=model.config)
            model(torch.tensor([tokens[:context]]), past_key_values=cache, use_cache=True)
            model(torch.tensor([tokens[context : context + 1]]), past_key_values=cache,
                  use_cache=True)  # warm-up step
            times = []
            for i in range(steps):
                ids = torch.tensor([[tokens[context + 1 + i]]])
                t0 = time.perf_counter()
                out = model(ids, past_key_values=cache, use_cache=True)
                times.append((time.perf_counter() - t0) * 1e3)
                del out
            times.sort()
            decode[str(context)] = {
                "mean_ms": statistics.fmean(times),
                "median_ms": statistics.median(times),
                "p90_ms": times[round((len(times) - 1) * 0.9)],
                "max_ms": times[-1],
                "steps": steps,
            }
        for length in PREFILL_LENGTHS:
            if length > max_pos:
                continue
            times = []
            for _ in range(repeats):
                cache = DynamicCache(config=model.config)
                t0 = time.perf_counter()
                model(torch.tensor([tokens[:length]]), past_key_values=cache, use_cache=True)
                times.append((time.perf_counter() - t0) * 1e3)
            prefill[str(length)] = {"median_ms": statistics.median(times), "repeats": repeats}
    return {
        "load_ms": load_ms,
        "decode": decode,
        "prefill": prefill,
        "peak_rss_mib": status_mib("VmHWM"),
        "rss_mib": status_mib("VmRSS"),
        "rss_anon_mib": status_mib("RssAnon"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="transformers figures for `midicopilot-engine bench`")
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args(argv)
    if not (a.bundle / "model.safetensors").is_file() or not (a.bundle / "config.json").is_file():
        print(f"bench_transformers: {a.bundle} is not a model bundle (no model.safetensors or "
              "config.json)", file=sys.stderr)
        return 1
    if a.steps < 1 or a.repeats < 1 or (a.threads is not None and a.threads < 1):
        print("bench_transformers: --steps, --repeats and --threads must be at least 1",
              file=sys.stderr)
        return 1
    result = bench(a.bundle, a.steps, a.repeats, a.threads)
    if a.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
