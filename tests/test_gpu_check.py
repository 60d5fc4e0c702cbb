"""scripts/gpu-check.sh, the check to run on a CUDA machine, run here on the CPU with a small shape
(its `--cpu` smoke test): every step of it works, and the logits check can tell."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_the_cpu(engine_bin, tmp_path):
    env = {**os.environ, "MIDICOPILOT_ENGINE": str(engine_bin), "WORK": str(tmp_path)}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--cpu"],
                         capture_output=True, text=True, env=env, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gpu-check passed (cpu)" in out.stdout
    assert "max |engine - transformers|" in out.stdout
    assert "decode @ 512:" in out.stdout and "prefill 512 tokens:" in out.stdout
    assert (tmp_path / "bundle" / "model.safetensors").exists()
