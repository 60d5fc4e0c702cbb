"""The model: an OLMo2 causal LM with the MIDI vocabulary, LoRA adapters and full embeddings.

- Base: `tiny` (an Olmo2Config with random weights; a few million parameters) or a hub id / local
  folder of a pretrained causal LM (allenai/OLMo-2-0425-1B), optionally 8/4-bit (bitsandbytes,
  CUDA only).
- The vocabulary is the MIDI tokenizer's: embed_tokens and lm_head are resized to it and
  re-initialized (the MIDI tokens share nothing with the English ones) from the old rows' mean
  and spread; [PAD] and [EOS] ids go into the config.
- peft LoRA on q/k/v/o projections; embed_tokens and lm_head are `modules_to_save` (trained in
  full): docs/TRAINING.md "Model".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from midicopilot.train.config import LoraSettings, ModelConfig

BASE_DIR = "base"  # inside a run folder: the saved random weights of a tiny base


class ModelError(RuntimeError):
    """A model that cannot be built. `str(err)` is one line."""


def quiet_transformers() -> None:
    """No per-file progress bars or deprecation chatter from transformers/peft in our output."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def tiny_config(cfg: ModelConfig, vocab_size: int, pad_id: int, eos_id: int):
    from transformers import Olmo2Config

    t = cfg.tiny
    return Olmo2Config(
        vocab_size=vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        max_position_embeddings=t.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta},
        tie_word_embeddings=False,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )


def check_quantize(cfg: ModelConfig) -> None:
    """Fail early, in one line, where quantization cannot work."""
    if not cfg.quantize:
        return
    import torch

    if cfg.base == "tiny":
        raise ModelError("model.quantize applies to a pretrained base, not to `tiny`")
    if not torch.cuda.is_available():
        raise ModelError(f"--quantize {cfg.quantize} needs a CUDA GPU (bitsandbytes); this "
                         "machine has none: drop --quantize or train on a GPU machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError(f"--quantize {cfg.quantize} needs bitsandbytes: "
                         "pip install bitsandbytes") from None


def build_base(cfg: ModelConfig, vocab_size: int, pad_id: int = 0, eos_id: int = 1,
               saved_base: Path | None = None, device: str = "cpu"):
    """The base model with the MIDI vocabulary (no adapters yet).

    `saved_base` is a folder written by `save_base` (the tiny base's random weights), loaded
    instead of drawing new ones.
    """
    import torch
    from transformers import AutoModelForCausalLM, Olmo2ForCausalLM

    check_quantize(cfg)
    quiet_transformers()
    dtype = torch_dtype(cfg.dtype)
    if cfg.base == "tiny":
        if saved_base is not None and (saved_base / "config.json").exists():
            model = Olmo2ForCausalLM.from_pretrained(saved_base, dtype=dtype)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.init_seed)
                model = Olmo2ForCausalLM(tiny_config(cfg, vocab_size, pad_id, eos_id)).to(dtype)
        if model.config.vocab_size != vocab_size:
            raise ModelError(f"the saved tiny base has vocabulary {model.config.vocab_size}, the "
                             f"tokenizer {vocab_size}")
        return model.to(device)

    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=cfg.quantize == "8bit",
            load_in_4bit=cfg.quantize == "4bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16,
            llm_int8_skip_modules=["lm_head", "embed_tokens"],
        )
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.base, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load base model {cfg.base!r}: {first}") from None
    _resize_vocabulary(model, vocab_size, cfg.init_seed)
    model.config.pad_token_id = pad_id
    model.config.eos_token_id = eos_id
    model.config.bos_token_id = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = pad_id
        model.generation_config.eos_token_id = eos_id
        model.generation_config.bos_token_id = None
    if cfg.quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model if cfg.quantize else model.to(device)


def _resize_vocabulary(model, vocab_size: int, seed: int) -> None:
    """Resize embed_tokens and lm_head to the MIDI vocabulary; draw every row afresh from the old
    rows' mean and standard deviation (the English rows mean nothing to MIDI text)."""
    import torch

    if model.config.tie_word_embeddings:  # keep lm_head its own matrix: both are trained apart
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    old_in = model.get_input_embeddings().weight.detach().float()
    old_out = model.get_output_embeddings().weight.detach().float()
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    generator = torch.Generator().manual_seed(seed)
    for module, old in ((model.get_input_embeddings(), old_in),
                        (model.get_output_embeddings(), old_out)):
        mean, std = old.mean(0), old.std(0)
        rows = mean + std * torch.randn(vocab_size, old.shape[1], generator=generator)
        with torch.no_grad():
            module.weight.copy_(rows.to(module.weight.dtype))
    model.config.vocab_size = vocab_size


def save_base(model, folder: Path) -> None:
    """Keep a tiny base's random weights (the frozen part) beside the run."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)


def add_lora(model, lora: LoraSettings, cfg: ModelConfig):
    """Wrap the base with LoRA adapters; embed_tokens and lm_head (and any
    `model.train_base_modules`) are trained in full. Trainable weights are kept in float32."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=list(lora.modules_to_save),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    for name, param in model.named_parameters():
        if any(part in name for part in cfg.train_base_modules) and "lora_" not in name \
                and "original_module" not in name:
            param.requires_grad_(True)
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def trainable_state(model) -> dict[str, Any]:
    """The trained weights by name (LoRA, embed_tokens/lm_head copies, trained base modules)."""
    return {name: param.detach().cpu().contiguous()
            for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state(model, state: dict[str, Any], source: str = "checkpoint") -> None:
    """Copy trained weights into a model built with the same config."""
    import torch

    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    missing, unexpected = sorted(wanted - set(state)), sorted(set(state) - wanted)
    if missing or unexpected:
        name = (missing or unexpected)[0]
        raise ModelError(f"{source} does not fit this model ({'missing' if missing else 'extra'}"
                         f" weight {name}): was it made with another config?")
    with torch.no_grad():
        for name in wanted:
            if params[name].shape != state[name].shape:
                raise ModelError(f"{source} does not fit this model ({name} is "
                                 f"{tuple(state[name].shape)}, the model wants "
                                 f"{tuple(params[name].shape)}): was it made with another config?")
            params[name].copy_(state[name])


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; a modules_to_save copy is counted once."""
    trainable = total = 0
    for name, param in model.named_parameters():
        if "original_module" in name:
            continue
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def merge(model):
    """Merge the LoRA adapters into the base; returns a plain transformers model."""
    return model.merge_and_unload()
