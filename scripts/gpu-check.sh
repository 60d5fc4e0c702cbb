#!/usr/bin/env bash
# For the day a CUDA machine is at hand (docs/ENGINE.md "CUDA"): build the engine with CUDA, make a
# random bundle shaped like OLMo-2-0425-1B (hidden 2048, 16 layers, 16 heads, intermediate 8192,
# bf16 on disk), check the engine's logits against transformers on the GPU, and print decode
# tokens/s and prefill ms. About 10 minutes, most of it the CUDA build.
#
#   scripts/gpu-check.sh            the real check, on cuda:0 (needs an NVIDIA GPU and driver)
#   scripts/gpu-check.sh --cpu      the same steps on the CPU with a small shape: a smoke test of
#                                   the script itself, which CI runs (tests/test_gpu_check.py)
#
# Environment: CUDA_HOME (default: a toolkit from PyPI wheels, scripts/cuda-toolkit.sh),
# CUDA_COMPUTE_CAP (default: what nvidia-smi reports), WORK (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
WORK=${WORK:-$(mktemp -d -t midicopilot-gpu-check.XXXXXX)}
mkdir -p "$WORK"
say() { printf '\033[1m== %s\033[0m\n' "$*"; }

if [ "$MODE" = gpu ]; then
  DEVICE=cuda:0
  SHAPE=(--hidden-size 2048 --layers 16 --heads 16 --kv-heads 16 --intermediate-size 8192)
  if [ -z "${CUDA_COMPUTE_CAP:-}" ] && command -v nvidia-smi >/dev/null; then
    CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)
    export CUDA_COMPUTE_CAP
  fi
  if [ -z "${CUDA_HOME:-}" ]; then
    eval "$(scripts/cuda-toolkit.sh)"
  fi
  TARGET=${CARGO_TARGET_DIR:-$ROOT/engine/target}-cuda
  say "cargo build --release --features cuda (compute capability ${CUDA_COMPUTE_CAP:-?})"
  CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --features cuda \
    --manifest-path engine/Cargo.toml
  ENGINE=$TARGET/release/midicopilot-engine
else
  DEVICE=cpu
  SHAPE=(--hidden-size 128 --layers 2 --heads 4 --kv-heads 4 --intermediate-size 512)
  TARGET=${CARGO_TARGET_DIR:-$ROOT/engine/target}
  say "cargo build --release (the CPU smoke test)"
  cargo build --release --quiet --manifest-path engine/Cargo.toml
  ENGINE=${MIDICOPILOT_ENGINE:-$TARGET/release/midicopilot-engine}
fi

say "a random bundle: ${SHAPE[*]}, bf16 on disk"
$PY tests/engine_fixtures.py "$WORK/bundle" "${SHAPE[@]}" --vocab-size 4096 \
  --max-position-embeddings 1024 --dtype bfloat16 >/dev/null

say "logits: the engine on $DEVICE against transformers"
$PY - "$ENGINE" "$WORK/bundle" "$DEVICE" <<'PY'
import json, random, subprocess, sys
import numpy as np
import torch
from transformers import Olmo2ForCausalLM

engine, bundle, device = sys.argv[1:]
rng = random.Random(0)
ids = [rng.randrange(4096) for _ in range(96)]
out = subprocess.run([engine, "logits", "--bundle", bundle, "--device", device,
                      "--prefill", ",".join(map(str, ids[:80])),
                      "--decode", ",".join(map(str, ids[80:]))],
                     capture_output=True, text=True, check=True)
got = json.loads(out.stdout)
ours = np.asarray(got["prefill"] + got["decode"], dtype=np.float32)
torch_device = "cuda" if device.startswith("cuda") else "cpu"
# On the GPU both sides run bf16 (the engine's CUDA path); on the CPU the engine runs f32.
dtype = torch.bfloat16 if torch_device == "cuda" else torch.float32
model = Olmo2ForCausalLM.from_pretrained(bundle, dtype=dtype).to(torch_device).eval()
with torch.inference_mode():
    theirs = model(torch.tensor([ids], device=torch_device)).logits[0].float().cpu().numpy()
scale = float(np.abs(theirs).max())
diff = float(np.abs(ours - theirs).max())
tolerance = 0.05 if torch_device == "cuda" else 1e-3
same_top1 = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
print(f"max |engine - transformers| = {diff:.4g} (logits up to {scale:.3g}); "
      f"top-1 agreement {same_top1:.3f}")
if diff > tolerance * max(scale, 1.0) or same_top1 < 0.9:
    sys.exit(f"gpu-check: the engine's logits differ from transformers' ({diff:.4g})")
PY

say "speed on $DEVICE"
$ENGINE bench --bundle "$WORK/bundle" --device "$DEVICE" --no-transformers --json --steps 16 \
  --repeats 2 > "$WORK/bench.json"
$PY - "$WORK/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for ctx, ms in sorted(r["decode_ms"].items(), key=lambda kv: int(kv[0])):
    print(f"decode @ {ctx}: {1000 / ms:.1f} tokens/s ({ms:.2f} ms/token)")
for n, ms in sorted(r["prefill_ms"].items(), key=lambda kv: int(kv[0])):
    print(f"prefill {n} tokens: {ms:.1f} ms")
PY
say "gpu-check passed ($MODE); files in $WORK"
