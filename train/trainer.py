"""The training loop of both phases, in plain torch (nanoGPT-style: read it top to bottom).

    align:  generic corpus, fresh LoRA + resized embeddings          (phase 1, docs/TRAINING.md)
    style:  target corpus, windows open with [GENRE_…] [PART_…],
            starts from the align checkpoint (--init-from)          (phase 2)

A run folder holds everything a run needs to resume or be exported:

    run.json              phase, resolved config, corpus, tokenizer hash, where it started from
    tokenizer.json        the tokenizer it was trained with
    base/                 tiny base only: its random (frozen) weights
    data/                 the tokenized windows (train/val), fixed for the life of the run
    checkpoints/step-N/   trainable.safetensors, optimizer.pt, rng-rank<r>.pt, state.json
    metrics.jsonl         one line per step ({"step", "loss", "lr"}) and per evaluation
    summary.json          the finished run: losses against the unigram baseline, time

Checkpoints are written to a hidden temporary folder and renamed into place, so a kill -9 leaves
either a whole checkpoint or none. `--resume` restores the trainable weights, the optimizer, the
RNG states of every rank and the data position (epoch and cursor of the seeded shuffle); the
learning rate is a function of the step. The loss sequence then continues as if never stopped.

Under `torchrun` (WORLD_SIZE > 1) the same loop runs DDP: every rank draws the same global batch
and trains on its slice; gloo on CPU, nccl on CUDA.

This module is the run: its folder, the loop, evaluation, metrics and summary. The windows and
their order are in windows.py, checkpoints (and the run folder's file helpers) in checkpoints.py,
the processes under torchrun in distributed.py.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midicopilot.train import corpus as corpus_mod
from midicopilot.train import model as model_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train.checkpoints import (
    checkpoint_dirs,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    read_json,
    remove_unfinished,
    run_of_checkpoint,
    save_checkpoint,
    sha256_file,
    write_json_atomic,
    write_json_lines,
)
from midicopilot.train.config import RESUMABLE_KEYS, RunConfig, differences
from midicopilot.train.distributed import Dist, setup_dist
from midicopilot.train.errors import TrainError
from midicopilot.train.windows import (
    IGNORE,
    Sampler,
    Windows,
    load_windows,
    make_windows,
    targets_of,
    unigram_loss,
)

RUN_FORMAT = "midicopilot-run"


def lr_at(step: int, cfg) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio at max_steps (step is 1-based)."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * coeff)


# --- the run -------------------------------------------------------------------------------------

@dataclass
class RunResult:
    run: Path
    steps: int
    eval_loss: float | None
    unigram_loss: float | None
    seconds: float


def _log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def train(cfg: RunConfig, out: Path | str, corpus: Path | str | None = None,
          tokenizer: Path | str | None = None, init_from: Path | str | None = None,
          resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = _log) -> RunResult:
    """Run (or resume) one phase into the run folder `out`. See the module docstring."""
    import torch

    run = Path(out)
    t = cfg.train
    device_kind = ("cuda" if torch.cuda.is_available() else "cpu") if t.device == "auto" \
        else t.device
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is cuda but no CUDA GPU is available")
    model_mod.check_quantize(cfg.model)
    dist = setup_dist(device_kind)
    device = torch.device("cuda", dist.local_rank) if device_kind == "cuda" else torch.device("cpu")
    if t.threads > 0:
        torch.set_num_threads(t.threads)

    # 1. The run folder: new, or resumed with the same config.
    checkpoint: Path | None = None
    if resume and (run / "run.json").exists():
        info = read_json(run / "run.json")
        _check_same_config(info, cfg, run)
        for given, key in ((corpus, "corpus"), (tokenizer, "tokenizer_source")):
            if given is not None and Path(given).resolve() != Path(info[key]).resolve():
                raise TrainError(f"{run} was trained with {key.split('_')[0]} {info[key]}, "
                                 f"not {given}")
        found = checkpoint_dirs(run)
        checkpoint = found[-1] if found else None
        if checkpoint is None:
            log(f"{run}: no checkpoint yet, starting from step 0")
    else:
        if (run / "run.json").exists():
            raise TrainError(f"{run} already holds a run: pass --resume to continue it, or choose "
                             "another output folder")
        if corpus is None or tokenizer is None:
            raise TrainError("a new run needs --corpus and --tokenizer")
        info = _new_run(run, cfg, Path(corpus), Path(tokenizer), init_from, dist, progress, log)
    remove_unfinished(run, dist)

    # 2. Data (tokenized once, when the run was created).
    tokenizer_obj = tok_mod.load_tokenizer(run / tok_mod.TOKENIZER_FILE)
    vocab = tokenizer_obj.get_vocab_size()
    pad_id = tokenizer_obj.token_to_id(tok_mod.PAD_TOKEN)
    eos_id = tokenizer_obj.token_to_id(tok_mod.EOS_TOKEN)
    train_w, val_w = load_windows(run, "train"), load_windows(run, "val")
    if len(train_w) == 0:
        raise TrainError(f"{info['corpus']}: no training windows (is the corpus empty?)")

    # 3. The model: base (+ saved tiny weights), LoRA, trained weights to start from.
    base = model_mod.build_base(cfg.model, vocab, pad_id, eos_id, saved_base=run / "base",
                                device=str(device))
    torch.manual_seed(cfg.model.init_seed)  # the LoRA matrices' initial draw
    model = model_mod.add_lora(base, cfg.lora, cfg.model)
    if checkpoint is None and info.get("init_from"):
        load_weights(model, Path(info["init_from"]))
    if not cfg.model.quantize:  # a bitsandbytes model is placed when loaded and cannot move
        model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=(t.beta1, t.beta2),
                                  weight_decay=t.weight_decay,
                                  fused=device.type == "cuda")
    sampler = Sampler(len(train_w), t.seed)
    step, elapsed_before = 0, 0.0
    torch.manual_seed(t.seed + dist.rank)
    if checkpoint is not None:
        step, elapsed_before = load_checkpoint(checkpoint, model, optimizer, sampler, dist)
        log(f"resuming {run} from step {step} ({checkpoint.name})")
    _truncate_metrics(run / "metrics.jsonl", step, dist)
    trainable, total = model_mod.count_parameters(model)
    if dist.main:
        log(f"{cfg.phase}: {total / 1e6:.2f}M parameters, {trainable / 1e6:.2f}M trained; "
            f"{len(train_w)} train / {len(val_w)} val windows of {cfg.data.context_length} "
            f"tokens; {dist.world} process(es) on {device.type}")
    net = dist.wrap(model, device)

    autocast_dtype = model_mod.torch_dtype(cfg.model.dtype)
    use_autocast = autocast_dtype != torch.float32

    def forward_loss(module, ids_np: np.ndarray, header_np: np.ndarray, reduction: str = "mean"):
        ids = torch.from_numpy(ids_np.astype(np.int64)).to(device)
        header = torch.from_numpy(header_np.astype(np.int64)).to(device)
        labels = targets_of(ids, header, pad_id)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
            logits = module(input_ids=ids).logits
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
            ignore_index=IGNORE, reduction=reduction), int((labels[:, 1:] != IGNORE).sum())

    eval_idx = np.random.default_rng([t.seed, 7]).permutation(len(val_w))
    if t.eval_windows > 0:
        eval_idx = np.sort(eval_idx[:t.eval_windows])

    @torch.no_grad()
    def evaluate() -> float | None:
        if len(eval_idx) == 0:
            return None
        model.eval()
        total_loss, count = 0.0, 0
        for i in range(0, len(eval_idx), t.batch_size):
            idx = eval_idx[i:i + t.batch_size]
            loss, n = forward_loss(model, val_w.ids[idx], val_w.header[idx], reduction="sum")
            total_loss += float(loss)
            count += n
        model.train()
        return total_loss / max(count, 1)

    unigram = info.get("unigram_loss")
    # 4. The loop.
    from tqdm import tqdm

    started = time.time()
    model.train()
    metrics = (run / "metrics.jsonl").open("a") if dist.main else None
    bar = tqdm(total=t.max_steps, initial=step, desc=cfg.phase, unit="step",
               disable=not progress or not dist.main, dynamic_ncols=True)
    per_rank = t.batch_size
    global_batch = per_rank * t.grad_accum * dist.world
    last_eval: float | None = None
    try:
        while step < t.max_steps:
            step += 1
            lr = lr_at(step, t)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = sampler.take(global_batch)
            loss_sum = 0.0
            for micro in range(t.grad_accum):
                first = (micro * dist.world + dist.rank) * per_rank
                idx = batch[first:first + per_rank]
                sync = micro == t.grad_accum - 1
                ctx = net.no_sync() if dist.world > 1 and not sync else nullcontext()
                with ctx:
                    loss, _ = forward_loss(net, train_w.ids[idx], train_w.header[idx])
                    (loss / t.grad_accum).backward()
                loss_sum += float(loss.detach())
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = dist.mean(loss_sum / t.grad_accum, device)
            if metrics:
                metrics.write(json.dumps({"step": step, "loss": step_loss, "lr": lr}) + "\n")
                metrics.flush()
            bar.update()
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
            last = step == t.max_steps
            if (t.eval_every and step % t.eval_every == 0) or last:
                if dist.main:
                    last_eval = evaluate()
                    if last_eval is not None:
                        metrics.write(json.dumps({"step": step, "eval_loss": last_eval}) + "\n")
                        metrics.flush()
                        log(f"step {step}: train loss {step_loss:.4f}, eval loss {last_eval:.4f}"
                            f" (unigram {unigram:.4f})")
                dist.barrier()
            if step % t.checkpoint_every == 0 or last:
                save_checkpoint(run, step, model, optimizer, sampler, cfg, dist,
                                elapsed_before + time.time() - started)
    finally:
        bar.close()
        if metrics:
            metrics.close()

    seconds = elapsed_before + time.time() - started
    if t.save_rank_states:
        from safetensors.torch import save_file

        (run / "rank-states").mkdir(exist_ok=True)
        save_file(model_mod.trainable_state(model), str(run / "rank-states" /
                                                        f"rank-{dist.rank}.safetensors"))
    if dist.main:
        if last_eval is None and len(eval_idx):
            last_eval = evaluate()
        summary = _summary(run, cfg, info, step, last_eval, seconds, train_w, val_w, dist.world)
        write_json_atomic(run / "summary.json", summary)
    dist.barrier()
    dist.close()
    return RunResult(run, step, last_eval, unigram, seconds)


def _check_same_config(info: dict[str, Any], cfg: RunConfig, run: Path) -> None:
    old = info.get("config", {})
    # What export does (its dtype, the recommended defaults) does not touch training.
    diffs = [d for d in differences(old, cfg.to_dict())
             if d not in RESUMABLE_KEYS and not d.startswith("export.")]
    if diffs:
        key = diffs[0]
        old_v, new_v = _get(old, key), _get(cfg.to_dict(), key)
        raise TrainError(f"{run} was made with another config ({key}: {old_v!r} there, "
                         f"{new_v!r} now{f', and {len(diffs) - 1} more' if len(diffs) > 1 else ''}"
                         "); resume with the same config or start a new run folder")


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _new_run(run: Path, cfg: RunConfig, corpus: Path, tokenizer: Path,
             init_from: Path | str | None, dist: Dist, progress: bool,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Create the run folder: config, tokenizer, base weights, windows. Returns run.json."""
    manifest = corpus_mod.load_manifest(corpus)
    tokenizer_obj = tok_mod.load_tokenizer(tokenizer)
    tokenizer_file = tokenizer / tok_mod.TOKENIZER_FILE if tokenizer.is_dir() else tokenizer
    counts = manifest.get("counts", {}).get("train", {})
    if not counts.get("examples"):
        raise TrainError(f"{corpus}: the corpus has no training examples")
    missing = sorted(set(manifest["meta_tokens"]) - set(tok_mod.meta_tokens(tokenizer_obj)))
    if missing:
        raise TrainError(f"{tokenizer_file}: lacks the corpus's metadata token {missing[0]}; "
                         "train the tokenizer on this corpus too")
    start: Path | None = None
    parent: dict[str, Any] | None = None
    if init_from is not None:
        start = find_checkpoint(init_from)
        parent = read_json(run_of_checkpoint(start) / "run.json")
        for section in ("model", "lora"):
            diffs = differences(parent["config"][section], cfg.to_dict()[section])
            if diffs:
                raise TrainError(f"{start} was made with another config ({section}.{diffs[0]}: "
                                 f"{_get(parent['config'][section], diffs[0])!r} there, "
                                 f"{_get(cfg.to_dict()[section], diffs[0])!r} now)")
        if parent["tokenizer_sha256"] != sha256_file(tokenizer_file):
            raise TrainError(f"{start} was trained with another tokenizer "
                             f"({parent['tokenizer_source']}); use the same one")
    info: dict[str, Any] = {
        "format": RUN_FORMAT,
        "phase": cfg.phase,
        "config": cfg.to_dict(),
        "corpus": str(corpus.resolve()),
        "corpus_manifest": {k: manifest[k] for k in
                            ("params", "event_language", "counts", "meta_tokens", "sources",
                             "genre", "transpositions")},
        "tokenizer_source": str(tokenizer.resolve()),
        "tokenizer_sha256": sha256_file(tokenizer_file),
        "init_from": str(start.resolve()) if start else None,
        # what the phases before this one did (align, for a style run)
        "history": [] if start is None or parent is None else [
            *parent.get("history", []),
            phase_record(run_of_checkpoint(start), parent, read_json(start / "state.json"))],
    }
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tokenizer_file, run / tok_mod.TOKENIZER_FILE)
        if cfg.model.base == "tiny":
            if start is not None:
                shutil.copytree(run_of_checkpoint(start) / model_mod.BASE_DIR,
                                run / model_mod.BASE_DIR, dirs_exist_ok=True)
            else:
                base = model_mod.build_base(cfg.model, tokenizer_obj.get_vocab_size(),
                                            tokenizer_obj.token_to_id(tok_mod.PAD_TOKEN),
                                            tokenizer_obj.token_to_id(tok_mod.EOS_TOKEN))
                model_mod.save_base(base, run / model_mod.BASE_DIR)
                del base
        (run / "data").mkdir(exist_ok=True)
        windows = {}
        for split in ("train", "val"):
            w = make_windows(corpus_mod.corpus_texts(corpus, split), tokenizer_obj,
                             cfg.data.context_length, cfg.data.header, cfg.data.eos,
                             progress=progress, desc=f"tokenizing {split}")
            np.save(run / "data" / f"{split}-ids.npy", w.ids)
            np.save(run / "data" / f"{split}-header.npy", w.header)
            windows[split] = w
        info["windows"] = {s: len(w) for s, w in windows.items()}
        info["unigram_loss"] = unigram_loss(windows["train"], windows["val"],
                                            tokenizer_obj.get_vocab_size(),
                                            tokenizer_obj.token_to_id(tok_mod.PAD_TOKEN))
        write_json_atomic(run / "run.json", info)
    dist.barrier()
    return read_json(run / "run.json")


def phase_record(run: Path, info: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What one phase did, for a bundle's training record (from summary.json once finished)."""
    record = {"phase": info["phase"], "header": info["config"]["data"]["header"],
              "meta_tokens": info["corpus_manifest"]["meta_tokens"],
              "corpus": info["corpus"], "corpus_counts": info["corpus_manifest"]["counts"],
              "unigram_loss": info.get("unigram_loss"), "step": state["step"]}
    if (run / "summary.json").exists():
        summary = read_json(run / "summary.json")
        record.update({k: summary.get(k) for k in
                       ("steps", "eval_loss", "final_train_loss", "train_seconds",
                        "windows_seen", "processes")})
    return record


# --- metrics and summary -------------------------------------------------------------------------

def _truncate_metrics(path: Path, step: int, dist: Dist) -> None:
    """Drop the lines a killed run wrote after its last checkpoint."""
    if not dist.main or not path.exists():
        return
    keep = [json.dumps(m) for m in _parse_lines(path) if m["step"] <= step]
    write_json_lines(path, keep)


def _parse_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines; a line cut short by a kill is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def read_metrics(run: Path | str) -> list[dict[str, Any]]:
    return _parse_lines(Path(run) / "metrics.jsonl")


def _summary(run: Path, cfg: RunConfig, info: dict[str, Any], step: int,
             eval_loss: float | None, seconds: float, train_w: Windows,
             val_w: Windows, world: int) -> dict[str, Any]:
    metrics = read_metrics(run)
    losses = [m["loss"] for m in metrics if "loss" in m]
    return {
        "phase": cfg.phase,
        "steps": step,
        "final_train_loss": losses[-1] if losses else None,
        "eval_loss": eval_loss,
        "unigram_loss": info.get("unigram_loss"),
        "train_windows": len(train_w),
        "val_windows": len(val_w),
        "context_length": cfg.data.context_length,
        "windows_seen": step * cfg.train.batch_size * cfg.train.grad_accum * world,
        "processes": world,
        "train_seconds": round(seconds, 1),
        "corpus": info.get("corpus"),
        "corpus_counts": info.get("corpus_manifest", {}).get("counts"),
    }
