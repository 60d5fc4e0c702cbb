"""Training configuration: one TOML file per model size, every knob overridable on the command line.

A config file has five tables, `[model]`, `[lora]`, `[data]`, `[train]`, `[export]`, and
per-phase overrides of the data and train tables: `[align.train]`, `[align.data]`,
`[style.train]`, `[style.data]`. `resolve(path, phase, sets)` applies `--set key=value` overrides
(dotted keys such as `train.lr=3e-4` or `style.train.max_steps=50`), then folds the phase's tables
into the top level, and returns a `RunConfig` of plain dataclasses. Unknown keys and wrongly typed
values are errors.

The knobs are documented by the dataclasses below (see also train/configs/*.toml).
"""
from __future__ import annotations

import copy
import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("align", "style")
CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A bad config file or override. `str(err)` is one line."""


@dataclass
class TinyModel:
    """The `tiny` base: an Olmo2Config with random weights, for tests and the CPU demo."""

    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096


@dataclass
class ModelConfig:
    base: str = "tiny"              # "tiny", a hub id (allenai/OLMo-2-0425-1B) or a local folder
    dtype: str = "float32"          # weights of the frozen base: float32 | bfloat16 | float16
    quantize: str = ""              # "" | "8bit" | "4bit" (bitsandbytes, CUDA only)
    init_seed: int = 0              # seeds the tiny base and the re-initialized embeddings
    gradient_checkpointing: bool = False
    # Base modules trained in full besides embed_tokens and lm_head (name substrings, e.g. "mlp").
    # Empty for a pretrained base (the design freezes its blocks).
    train_base_modules: list[str] = field(default_factory=list)
    tiny: TinyModel = field(default_factory=TinyModel)


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # Trained in full: the vocabulary changed, so these rows are new (docs/TRAINING.md).
    modules_to_save: list[str] = field(default_factory=lambda: ["embed_tokens", "lm_head"])


@dataclass
class DataConfig:
    context_length: int = 256       # tokens per training window, header included
    header: bool = True             # open every window with the example's metadata tokens
    eos: bool = True                # end each example's last window with [EOS]


@dataclass
class TrainLoop:
    max_steps: int = 200            # optimizer steps of this phase
    batch_size: int = 8             # windows per micro-batch per process
    grad_accum: int = 1             # micro-batches per optimizer step
    lr: float = 1e-3                # peak learning rate (cosine decay after warmup)
    min_lr_ratio: float = 0.1       # final lr = lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0          # 0 disables clipping
    seed: int = 1234                # data order, dropout
    eval_every: int = 50            # steps between evaluations (0: only at the end)
    eval_windows: int = 64          # validation windows per evaluation (0: all)
    checkpoint_every: int = 50      # steps between checkpoints (the last step always checkpoints)
    keep_checkpoints: int = 2       # newest checkpoints kept on disk
    device: str = "auto"            # auto | cpu | cuda
    threads: int = 0                # torch CPU threads (0: torch's default)
    save_rank_states: bool = False  # each DDP rank writes its trainable weights at the end (tests)


@dataclass
class ExportConfig:
    dtype: str = "float32"          # dtype of model.safetensors: float32 | bfloat16 | float16
    # How the bundle is meant to be played (midicopilot.json "defaults"; the engine uses them
    # unless a flag or a preset says otherwise): genre, part, temperature, top_p, max_polyphony,
    # polyphony (a table: part name → notes), weights (f32 | f16 | q8). docs/QUALITY.md.
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """The configuration of one phase, resolved."""

    phase: str = "align"
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainLoop = field(default_factory=TrainLoop)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data, "")


# Knobs that may change when a run is resumed (they do not change what is computed per step).
RESUMABLE_KEYS = {
    "train.max_steps", "train.eval_every", "train.eval_windows", "train.checkpoint_every",
    "train.keep_checkpoints", "train.device", "train.threads", "train.save_rank_states",
}


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}")
    values = {}
    for name in fields:
        if name not in data:
            continue
        hint, value, key = hints[name], data[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key} must be a table")
            values[name] = _build(hint, value, key + ".")
        else:
            values[name] = _coerce(hint, value, key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a table, not {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key {key} must be a list of strings, not {value!r}")
        return list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key} must be {getattr(hint, '__name__', hint)}, "
                      f"not {value!r}")


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' → (['train', 'lr'], 0.0003). Values are TOML (strings may go unquoted)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def load_file(path: Path | str) -> dict[str, Any]:
    """A config file as a dict; a bare name such as `tiny` means train/configs/tiny.toml."""
    path = Path(path)
    if not path.suffix and not path.exists() and (CONFIG_DIR / f"{path}.toml").exists():
        path = CONFIG_DIR / f"{path}.toml"
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (built in: "
                          f"{', '.join(p.stem for p in sorted(CONFIG_DIR.glob('*.toml')))})"
                          ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: bad TOML: {err}") from None


def resolve(source: Path | str | dict[str, Any] | None, phase: str,
            sets: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The config of `phase` from a file (or dict) and `--set` overrides."""
    if phase not in PHASES:
        raise ConfigError(f"unknown phase {phase!r} (align or style)")
    raw = copy.deepcopy(source) if isinstance(source, dict) else \
        (load_file(source) if source is not None else {})
    parsed = [(item, *parse_set(item)) for item in sets]
    # --set align.train.lr=… edits a phase table; --set train.lr=… wins over both phase tables
    for item, path, value in parsed:
        if path[0] in PHASES:
            _assign(raw, path, value, item)
    merged = {k: v for k, v in raw.items() if k not in PHASES}
    for other in PHASES:
        overrides = raw.get(other, {})
        if not isinstance(overrides, dict) or set(overrides) - {"data", "train"}:
            raise ConfigError(f"[{other}] may only hold data and train tables")
        if other != phase:
            continue
        for table, values in overrides.items():
            merged[table] = {**merged.get(table, {}), **values}
    for item, path, value in parsed:
        if path[0] not in PHASES:
            _assign(merged, path, value, item)
    merged["phase"] = phase
    config = _build(RunConfig, merged, "")
    validate(config)
    return config


def _assign(raw: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    table = raw
    for part in path[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a table")
    table[path[-1]] = value


def validate(config: RunConfig) -> None:
    t, d, m = config.train, config.data, config.model
    checks = [
        (t.max_steps >= 1, "train.max_steps must be >= 1"),
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.grad_accum >= 1, "train.grad_accum must be >= 1"),
        (t.lr > 0, "train.lr must be > 0"),
        (t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (t.device in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda"),
        (d.context_length >= 16, "data.context_length must be >= 16"),
        (m.quantize in ("", "8bit", "4bit"), "model.quantize must be '', '8bit' or '4bit'"),
        (m.dtype in DTYPES, f"model.dtype must be one of {', '.join(DTYPES)}"),
        (config.export.dtype in DTYPES, f"export.dtype must be one of {', '.join(DTYPES)}"),
        (config.lora.r >= 1, "lora.r must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_play_defaults(config.export.defaults)


PLAY_DEFAULT_KEYS = ("genre", "part", "temperature", "top_p", "max_polyphony", "polyphony",
                     "weights")


def check_play_defaults(d: dict[str, Any]) -> None:
    """The `export.defaults` table, checked as the engine will read it (bundle.rs PlayDefaults)."""
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"config key export.defaults.{key} {why}")

    for key, value in d.items():
        if key not in PLAY_DEFAULT_KEYS:
            raise bad(key, f"is unknown (known: {', '.join(PLAY_DEFAULT_KEYS)})")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("genre", "part") and not (isinstance(value, str) and value):
            raise bad(key, "must be a name such as CHORALE")
        if key == "temperature" and not (number and value >= 0):
            raise bad(key, "must be a number >= 0")
        if key == "top_p" and not (number and 0 < value <= 1):
            raise bad(key, "must be in (0, 1]")
        polys = value.values() if key == "polyphony" and isinstance(value, dict) else \
            [value] if key == "max_polyphony" else []
        if key == "polyphony" and not isinstance(value, dict):
            raise bad(key, "must be a table of part name = notes")
        if any(not (isinstance(n, int) and 1 <= n <= 128) for n in polys):
            raise bad(key, "must be whole numbers 1–128")
        if key == "weights" and value not in ("f32", "f16", "q8"):
            raise bad(key, "must be f32, f16 or q8")


DTYPES = ("float32", "bfloat16", "float16")


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = sorted(set(old) | set(new))
    diffs: list[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            diffs.append(f"{prefix}{key}")
    return diffs
