#!/usr/bin/env bash
# Installs everything midicopilot needs on a fresh Debian machine; idempotent (a second run only
# checks). Called by `make demo` and `make test`; safe to run by hand.
#
#   scripts/setup.sh play   what a player needs (`make demo`): JACK, the host, the engine; no torch
#   scripts/setup.sh dev    everything (`make test`): also the training extra and the test tools
set -euo pipefail
MODE=${1:-dev}
case "$MODE" in
  play) EXTRAS="" ;;
  dev) EXTRAS="[train,test]" ;;
  *) echo "usage: scripts/setup.sh [play|dev]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${MIDICOPILOT_CACHE:-$HOME/.cache/midicopilot}
mkdir -p "$CACHE"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

# 1. Debian packages: the JACK server and headers, ALSA headers (midir), pkg-config.
APT_PACKAGES=(jackd2 libjack-jackd2-dev libasound2-dev pkg-config)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # jackd2 asks whether to enable realtime scheduling; the default answer is fine.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Python: this project, editable, with the mode's extras. Re-installed only when the
#    packaging files change or the installed copy points at another clone. `dev` also satisfies
#    `play`.
PY=${PYTHON:-python3}
hash=$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)
stamp="$CACHE/pip-$MODE-$hash"
[ "$MODE" = play ] && [ -f "$CACHE/pip-dev-$hash" ] && stamp="$CACHE/pip-dev-$hash"
installed_from=$($PY -c 'import midicopilot.train as t, os; print(os.path.dirname(os.path.dirname(t.__file__)))' 2>/dev/null || true)
if [ ! -f "$stamp" ] || [ "$installed_from" != "$ROOT" ]; then
  say "pip: installing midicopilot (editable)${EXTRAS:+ with $EXTRAS} and its dependencies"
  $PY -m pip install -q --disable-pip-version-check -e "$ROOT$EXTRAS"
  touch "$stamp"
fi

# 3. Rust: the engine, release build (incremental; CARGO_TARGET_DIR may point at a shared cache).
say "cargo: building midicopilot-engine (release)"
cargo build --release --quiet --manifest-path engine/Cargo.toml
