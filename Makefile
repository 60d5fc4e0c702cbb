# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Both install what they need first (scripts/setup.sh, idempotent).
SHELL := /bin/bash
PYTHON ?= python3
export CARGO_TARGET_DIR ?= $(CURDIR)/engine/target
export MIDICOPILOT_ENGINE ?= $(CARGO_TARGET_DIR)/release/midicopilot-engine

.PHONY: setup setup-play demo test test-python test-rust lint build-cuda

setup:
	@scripts/setup.sh dev

setup-play:
	@scripts/setup.sh play

demo: setup-play
	$(PYTHON) -m midicopilot.host.demo

test: setup lint test-rust test-python

lint:
	$(PYTHON) -m ruff check host train tests

test-rust:
	cargo test --release --manifest-path engine/Cargo.toml

test-python:
	$(PYTHON) -m pytest -q

# The engine with CUDA, built without a GPU (docs/ENGINE.md "CUDA"): the toolkit from PyPI wheels,
# its own target folder (other features than the CPU build).
build-cuda:
	eval "$$(scripts/cuda-toolkit.sh)" && \
	  CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-cuda cargo build --release --features cuda \
	  --manifest-path engine/Cargo.toml
