"""A run's checkpoints, and the small file helpers the run folder is written with.

    checkpoints/step-N/   trainable.safetensors   the trained weights (LoRA, embeddings, head, …)
                          optimizer.pt            AdamW's state
                          rng-rank<r>.pt          each rank's torch (and CUDA) RNG state
                          state.json              step, data position, processes, time, config

A checkpoint is written to a hidden `.tmp-step-N` folder, fsynced and renamed into place, so a
kill -9 leaves either a whole checkpoint or none; the newest `train.keep_checkpoints` are kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from midicopilot.train import model as model_mod
from midicopilot.train.config import RunConfig
from midicopilot.train.distributed import Dist
from midicopilot.train.errors import TrainError
from midicopilot.train.windows import Sampler

# --- finding them --------------------------------------------------------------------------------

def checkpoint_dirs(run: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = run / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir()
             if p.is_dir() and p.name.startswith("step-") and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_checkpoint(path: Path | str) -> Path:
    """A checkpoint folder, or the newest checkpoint of a run folder."""
    path = Path(path)
    if (path / "state.json").exists() and (path / "trainable.safetensors").exists():
        return path
    if (path / "run.json").exists():
        found = checkpoint_dirs(path)
        if not found:
            raise TrainError(f"{path}: the run has no checkpoint yet")
        return found[-1]
    raise TrainError(f"{path}: neither a run folder nor a checkpoint")


def run_of_checkpoint(checkpoint: Path) -> Path:
    return checkpoint.parent.parent


def remove_unfinished(run: Path, dist: Dist) -> None:
    """Delete what a killed run left of the checkpoint it was writing."""
    if dist.main:
        for stale in (run / "checkpoints").glob(".tmp-*") if (run / "checkpoints").is_dir() \
                else ():
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()


# --- writing and reading them --------------------------------------------------------------------

def save_checkpoint(run: Path, step: int, model, optimizer, sampler: Sampler, cfg: RunConfig,
                    dist: Dist, seconds: float) -> Path:
    """Write checkpoints/step-N atomically (a hidden temporary folder renamed into place)."""
    import torch
    from safetensors.torch import save_file

    root = run / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if dist.main:
        root.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / f"rng-rank{dist.rank}.pt")
    dist.barrier()
    if dist.main:
        save_file(model_mod.trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = {"step": step, "sampler": sampler.state(), "world": dist.world,
                 "train_seconds": round(seconds, 3), "phase": cfg.phase, "config": cfg.to_dict()}
        (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for old in checkpoint_dirs(run)[:-cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def _fsync_dir(path: Path) -> None:
    for file in [*path.iterdir(), path] if path.is_dir() else [path]:
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def load_checkpoint(checkpoint: Path, model, optimizer, sampler: Sampler,
                    dist: Dist) -> tuple[int, float]:
    """Restore weights, optimizer, this rank's RNG state and the data position; returns the step
    and the training seconds spent so far."""
    import torch

    state = read_json(checkpoint / "state.json")
    if state.get("world", 1) != dist.world:
        raise TrainError(f"{checkpoint} was written by {state.get('world')} process(es); resume "
                         f"it with the same number (now {dist.world})")
    load_weights(model, checkpoint)
    try:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        rng = torch.load(checkpoint / f"rng-rank{dist.rank}.pt", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise TrainError(f"{checkpoint}: damaged checkpoint ({str(err).splitlines()[0]})"
                         ) from None
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    sampler.load(state["sampler"])
    return int(state["step"]), float(state.get("train_seconds", 0.0))


def load_weights(model, checkpoint: Path) -> None:
    """A checkpoint's trained weights into `model` (the rest of the checkpoint is left)."""
    model_mod.load_trainable_state(model, load_tensors(checkpoint / "trainable.safetensors"),
                                   source=str(checkpoint))


def load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise TrainError(f"{path}: unreadable weights ({str(err).splitlines()[0]})") from None


# --- files ---------------------------------------------------------------------------------------

def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TrainError(f"{path}: unreadable ({err})") from None


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def write_json_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
