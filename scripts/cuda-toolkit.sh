#!/usr/bin/env bash
# A CUDA toolkit from PyPI wheels, enough to *build* the engine with `--features cuda` on a
# machine without a GPU or a system CUDA install (CI does; docs/ENGINE.md "CUDA"). Idempotent;
# prints the environment to use, for `eval "$(scripts/cuda-toolkit.sh)"`.
#
# - nvcc, cicc, the CRT and CCCL headers, the runtime, cuBLAS, cuRAND and NVRTC: NVIDIA's CUDA 13
#   wheels, which install into one `nvidia/cu13` tree laid out like a toolkit. (The cu12 wheels
#   carry ptxas and headers but no `nvcc` driver, so they cannot compile candle's kernels.)
# - libcuda.so, the driver API, is not on PyPI (it comes with the NVIDIA driver). The toolkit ships
#   a link stub in lib/stubs for building without a driver; this script writes the same: a
#   library named libcuda.so.1 exporting every `cu*` symbol cudarc declares, used only to link.
#   At run time the driver's own libcuda.so.1 is loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MIDICOPILOT_CACHE:-$HOME/.cache/midicopilot}
VERSION=13.2
TK_ROOT="$CACHE/cuda-$VERSION"
CUDA_HOME="$TK_ROOT/nvidia/cu13"
PY=${PYTHON:-python3}
COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

WHEELS=(
  "nvidia-cuda-nvcc==$VERSION.*" "nvidia-nvvm==$VERSION.*" "nvidia-cuda-crt==$VERSION.*"
  "nvidia-cuda-runtime==$VERSION.*" "nvidia-cuda-cccl==$VERSION.*" "nvidia-cuda-nvrtc==$VERSION.*"
  "nvidia-cublas==13.*" "nvidia-curand==10.*"
)
stamp="$TK_ROOT/.installed-$(printf '%s\n' "${WHEELS[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  say "pip: the CUDA $VERSION toolkit wheels into $TK_ROOT"
  $PY -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$TK_ROOT" \
    "${WHEELS[@]}" >&2
  touch "$stamp"
fi
[ -x "$CUDA_HOME/bin/nvcc" ] || { echo "cuda-toolkit: no nvcc in $CUDA_HOME/bin" >&2; exit 1; }

# The linker looks for unversioned names; the wheels ship the versioned ones.
lib="$CUDA_HOME/lib"
for so in "$lib"/lib{cublas,cublasLt,curand,nvrtc,cudart}.so.*; do
  [ -e "$so" ] || continue
  base="${so##*/}"; base="${base%%.so.*}.so"
  [ -e "$lib/$base" ] || ln -s "${so##*/}" "$lib/$base"
done

# The driver's link stub (see above), from the driver functions cudarc binds.
stub="$lib/stubs/libcuda.so"
if [ ! -f "$stub" ]; then
  say "writing the libcuda link stub"
  # (the sources are there once cargo has fetched them; a fresh machine has not yet)
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -n 1 || true)
  if [ -z "$cudarc" ]; then
    cargo fetch --quiet --manifest-path engine/Cargo.toml >&2
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -n 1)
  fi
  mkdir -p "$lib/stubs"
  grep -rhoE '\bfn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys" | sed 's/^fn //' | sort -u |
    sed 's/.*/void &(void) {}/' > "$lib/stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$lib/stubs/libcuda_stub.c"
fi

cat <<ENV
export CUDA_HOME="$CUDA_HOME"
export CUDA_PATH="$CUDA_HOME"
export PATH="$CUDA_HOME/bin:\$PATH"
export LIBRARY_PATH="$lib:$lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP=$COMPUTE_CAP
export CUDARC_CUDA_VERSION=${VERSION/./0}0
ENV
