"""The engine's OLMo2 forward pass against transformers, on random bundles made with transformers.

The engine (`midicopilot-engine logits`, a hidden diagnostic subcommand) runs a multi-token
prefill, then token-by-token decode steps through its KV cache, then a prefix cut (the cache
truncated to K tokens) and a multi-token refill with different tokens. transformers runs the same
sequences from scratch. Positions go past 256, where a RoPE table kept in bf16 would go wrong.

Tolerance: max |engine - transformers| < 1e-4 on f32 logits whose scale is ~1 (asserted, so the
bound means something); measured ~3e-6.

Also: a bundle the engine cannot run is refused with one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import make_random_bundle

TOLERANCE = 1e-4

BUNDLES = {
    # GQA (2 query heads per key head), rope_theta inside rope_parameters (transformers 5.x).
    "gqa": dict(vocab_size=512, hidden_size=64, layers=2, heads=4, kv_heads=2, seed=1),
    # Tied embeddings, rope_theta at the top level (transformers 4.x), bf16 weights on disk,
    # plain multi-head attention, a large theta.
    "tied_legacy_bf16": dict(
        vocab_size=400, hidden_size=64, layers=2, heads=4, kv_heads=4, seed=2,
        tie_word_embeddings=True, legacy_rope_theta=True, rope_theta=500000.0, dtype="bfloat16",
    ),
    # One key head for six query heads, head_dim 16, three layers.
    "mqa": dict(vocab_size=300, hidden_size=96, layers=3, heads=6, kv_heads=1, seed=3,
                intermediate_size=160),
}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parity-bundles")
    return {name: make_random_bundle(root / name, **kw) for name, kw in BUNDLES.items()}


def engine_logits(engine_bin: Path, bundle: Path, prefill, decode=(), cut=None, refill=(),
                  weights: str | None = None):
    args = [str(engine_bin), "logits", "--bundle", str(bundle),
            "--prefill", ",".join(map(str, prefill))]
    if weights:
        args += ["--weights", weights]
    if decode:
        args += ["--decode", ",".join(map(str, decode))]
    if cut is not None:
        args += ["--cut", str(cut), "--refill", ",".join(map(str, refill))]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def transformers_logits(bundle: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import Olmo2ForCausalLM

    model = Olmo2ForCausalLM.from_pretrained(bundle, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].numpy()


def check(name: str, ours, theirs: np.ndarray) -> None:
    ours = np.asarray(ours, dtype=np.float32)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    assert np.abs(theirs).max() > 0.5, f"{name}: logits too small for the tolerance to mean much"
    diff = float(np.abs(ours - theirs).max())
    assert diff < TOLERANCE, f"{name}: max abs diff {diff:.3g} >= {TOLERANCE}"


@pytest.mark.parametrize("name", list(BUNDLES))
def test_prefill_decode_and_prefix_cut_match_transformers(engine_bin, bundles, name):
    bundle = bundles[name]
    vocab = json.loads((bundle / "config.json").read_text())["vocab_size"]
    rng = random.Random(name)
    ids = [rng.randrange(vocab) for _ in range(400)]
    prefill, decode = ids[:300], ids[300:320]
    cut, refill = 280, ids[320:360]

    got = engine_logits(engine_bin, bundle, prefill, decode, cut, refill)
    assert got["vocab_size"] == vocab
    assert len(got["prefill"]) == 300 and len(got["decode"]) == 20 and len(got["refill"]) == 40

    full = transformers_logits(bundle, prefill + decode)
    check(f"{name} prefill", got["prefill"], full[:300])
    check(f"{name} decode (positions 300-319)", got["decode"], full[300:])
    after_cut = transformers_logits(bundle, prefill[:cut] + refill)
    check(f"{name} refill after a cut to {cut}", got["refill"], after_cut[cut:])


def test_decode_from_the_first_token_matches_transformers(engine_bin, bundles):
    """One token of prefill, then every position through the cache one at a time."""
    bundle = bundles["gqa"]
    rng = random.Random(7)
    ids = [rng.randrange(512) for _ in range(64)]
    got = engine_logits(engine_bin, bundle, ids[:1], ids[1:])
    theirs = transformers_logits(bundle, ids)
    check("first token", got["prefill"], theirs[:1])
    check("decode 1-63", got["decode"], theirs[1:])


def test_the_mismatch_check_can_fail(engine_bin, bundles):
    """Another bundle's logits do not pass as these: the tolerance is not vacuous."""
    rng = random.Random(9)
    ids = [rng.randrange(300) for _ in range(30)]
    got = engine_logits(engine_bin, bundles["mqa"], ids)
    other = make_random_bundle(bundles["mqa"].parent / "mqa-other", **{**BUNDLES["mqa"], "seed": 4})
    diff = np.abs(np.asarray(got["prefill"]) - transformers_logits(other, ids)).max()
    assert diff > 100 * TOLERANCE


# --- refusals -------------------------------------------------------------------------------


@pytest.fixture
def broken(bundles, tmp_path) -> Path:
    """A copy of a good bundle to break."""
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(bundles["gqa"], dst)
    return dst


def refused(engine_bin: Path, bundle: Path, *extra: str) -> str:
    out = subprocess.run(
        [str(engine_bin), "logits", "--bundle", str(bundle), "--prefill", "1,2", *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0, out.stdout[:200]
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "panicked" not in out.stderr and "Traceback" not in out.stderr
    return lines[0]


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "tokenizer.json",
                                     "midicopilot.json"])
def test_missing_file_is_refused(engine_bin, broken, missing):
    (broken / missing).unlink()
    line = refused(engine_bin, broken)
    assert f"has no {missing}" in line and "midicopilot export" in line


def test_not_a_folder_is_refused(engine_bin, tmp_path):
    line = refused(engine_bin, tmp_path / "nowhere")
    assert "is not a folder" in line


def test_metadata_vocab_mismatch_is_refused(engine_bin, broken):
    edit_json(broken / "midicopilot.json", vocab_size=513)
    line = refused(engine_bin, broken)
    assert "vocabulary sizes disagree" in line and "midicopilot.json vocab_size 513" in line
    assert "midicopilot export" in line


def test_config_vocab_mismatch_is_refused(engine_bin, broken):
    edit_json(broken / "config.json", vocab_size=640)
    line = refused(engine_bin, broken)
    assert "config.json vocab_size 640" in line and "embed_tokens 512 rows" in line


def test_wrong_event_language_is_refused(engine_bin, broken):
    edit_json(broken / "midicopilot.json", event_language="v2")
    line = refused(engine_bin, broken)
    assert 'event language "v2"' in line and 'speaks "v1"' in line


def test_wrong_bundle_version_is_refused(engine_bin, broken):
    edit_json(broken / "midicopilot.json", bundle_version=2)
    line = refused(engine_bin, broken)
    assert "bundle_version 2" in line and "midicopilot export" in line


def test_missing_special_token_is_refused(engine_bin, broken):
    edit_json(broken / "midicopilot.json", eos_token="[END]",
              meta_tokens=["[GENRE_CHORALE]", "[GENRE_JAZZ]"])
    line = refused(engine_bin, broken)
    assert "[END]" in line and "[GENRE_JAZZ]" in line and "[GENRE_CHORALE]" not in line


def test_corrupt_weights_are_refused(engine_bin, broken):
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    line = refused(engine_bin, broken)
    assert "model.safetensors" in line and "safetensors" in line


def test_scaled_rope_is_refused(engine_bin, broken):
    edit_json(broken / "config.json",
              rope_parameters={"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0})
    line = refused(engine_bin, broken)
    assert "rope_type" in line and "linear" in line


def test_token_outside_the_vocabulary_is_refused(engine_bin, bundles):
    line = refused(engine_bin, bundles["gqa"], "--decode", "512")
    assert "token id 512 is outside" in line


def test_sequence_longer_than_the_model_is_refused(engine_bin, bundles):
    line = refused(engine_bin, bundles["gqa"], "--capacity", "5000")
    assert "longer than the model's 1024 positions" in line


# --- the bench command (what it reports, not how fast: numbers go to docs/BENCHMARKS.md) ------


def test_bench_reports_engine_and_transformers_figures(engine_bin, bundles, python_exe):
    out = subprocess.run(
        [str(engine_bin), "bench", "--bundle", str(bundles["gqa"]), "--json", "--steps", "2",
         "--repeats", "1", "--python", python_exe, "--weights", "q8", "--threads", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["weights"], report["threads"]) == ("q8", 2)
    assert report["cpu_kernels"] in ("engine-avx2", "candle")
    for r in (report, report["transformers"]):
        assert set(r["decode_ms"]) == {"64", "256", "512"}, r
        assert set(r["prefill_ms"]) == {"256", "512"}, r
        assert all(v > 0 for v in r["decode_ms"].values())
        assert r["peak_rss_mib"] > 1
    # The floor: the bytes a step reads over the bandwidth measured in the same run; it grows with
    # the context (the KV cache), and no step is faster than it.
    assert report["bandwidth_gbs"] > 0.1
    floors = [report["floor_ms"][c] for c in ("64", "256", "512")]
    assert floors == sorted(floors) and floors[0] > 0
    assert report["bound_ms"] == report["floor_ms"]["512"]
    assert all(report["decode_over_floor"][c] == pytest.approx(
        report["decode_ms"][c] / report["floor_ms"][c]) for c in report["floor_ms"])
    # Q8_0 takes 34 bytes per 32 weights; hidden 64 is a whole number of blocks, so nothing
    # stays f32 and the weights read are about a quarter of f32's.
    assert report["matrices_kept_f32"] == 0
    dims = report["model"]
    f32_bytes = 4 * (dims["layers"] * (64 * (64 + 2 * 32) + 64 * 64 + 3 * 64 * dims[
        "intermediate_size"]) + dims["vocab_size"] * 64)
    assert report["weight_bytes"] == pytest.approx(f32_bytes * 34 / 128, rel=0.01)


@pytest.mark.parametrize("weights, tolerance", [("f16", 2e-2), ("q8", 6e-2)])
def test_smaller_weights_stay_close_to_f32(engine_bin, bundles, weights, tolerance):
    """f16 and Q8_0 weights give logits near f32's (not equal: that is the point of a format
    test that could fail), through prefill, decode and a prefix cut alike."""
    bundle = bundles["gqa"]
    rng = random.Random(11)
    ids = [rng.randrange(512) for _ in range(120)]
    f32 = engine_logits(engine_bin, bundle, ids[:80], ids[80:100], 70, ids[100:])
    small = engine_logits(engine_bin, bundle, ids[:80], ids[80:100], 70, ids[100:],
                          weights=weights)
    for part in ("prefill", "decode", "refill"):
        a, b = np.asarray(f32[part]), np.asarray(small[part])
        diff = float(np.abs(a - b).max())
        assert 0 < diff < tolerance * float(np.abs(a).max()), (part, diff)
