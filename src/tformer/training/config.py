"""A training run's configuration: the YAML that ``tformer train`` reads (data, model, train sections)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from tformer.config import ConfigError, check, from_dict
from tformer.errors import TformerError
from tformer.models.transformer.config import TransformerConfig

# ---- training runs ---------------------------------------------------------------------------
MODEL_PRESETS = ("tiny", "small", "base", "big")
DATA_FORMATS = ("auto", "text", "tsv", "jsonl")
TOKENIZER_MODELS = ("bpe", "unigram")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TASKS = ("translation", "cmlm", "lm", "classify", "vision")  # modules of tformer.tasks


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel text is and how it becomes subwords.

    Attributes:
        train_src, train_tgt: plain-text files, one sentence a line (``.gz`` read transparently);
            or, for ``format: tsv|jsonl``, ``train_src`` alone holds both sides.
        valid_src, valid_tgt: validation files, same form (optional but needed for early stopping).
        data_dir: prefix for relative paths above (e.g. ``../shared/data/multi30k``).
        format: "auto" (from the suffix), "text", "tsv" or "jsonl".
        vocab_size: subword vocabulary size; tokenizer: "bpe" or "unigram"; shared_vocab: one
            vocabulary for both languages (needed to tie all three matrices).
        max_len: pairs with more subwords than this on either side are dropped (and counted).
        max_len_ratio: pairs whose length ratio exceeds this are dropped; 0 = no limit.
        labels: task classify: the class names, with one file per class (``train_src: train.{label}.gz``).
        test_src, test_tgt: task classify: test data, same form, scored once at the end of the run by the
            model chosen on validation (``test_accuracy`` in the summary).
        max_shift: task vision: training images move by up to this many pixels at random (0 = off).
        mixup: task vision: alpha of mixup's Beta(alpha, alpha) weight for blending pairs of training
            images and their labels (0 = off).
    """

    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    data_dir: str = ""
    format: str = "auto"
    vocab_size: int = 8000
    tokenizer: str = "bpe"
    shared_vocab: bool = True
    max_len: int = 100
    max_len_ratio: float = 0.0
    labels: tuple[str, ...] = ()
    test_src: str = ""
    test_tgt: str = ""
    max_shift: int = 1
    mixup: float = 0.0

    def __post_init__(self) -> None:
        check(self.format in DATA_FORMATS, f"data.format must be one of {DATA_FORMATS}, got {self.format!r}")
        check(self.tokenizer in TOKENIZER_MODELS, f"data.tokenizer must be one of {TOKENIZER_MODELS}")
        check(self.vocab_size >= 16, f"data.vocab_size must be >= 16, got {self.vocab_size}")
        check(self.max_len >= 1, f"data.max_len must be >= 1, got {self.max_len}")
        check(self.max_len_ratio >= 0, "data.max_len_ratio must be >= 0")
        check(self.mixup >= 0, "data.mixup must be >= 0")

    def path(self, name: str) -> str:
        """A data path with ``data_dir`` applied ('' stays '')."""
        p = getattr(self, name)
        return os.path.join(self.data_dir, p) if p and self.data_dir and not os.path.isabs(p) else p


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation (§5.3, §5.4) and the loop around it.

    Attributes:
        max_tokens: token budget of one batch (padded source or target tokens, whichever is larger).
        accumulate: batches whose gradients are summed before one optimizer step.
        max_steps: optimizer steps to run (0 = until max_epochs); max_epochs: passes over the data (0 = no limit).
        max_minutes: wall-clock budget of this invocation; when it runs out, training validates, saves
            and stops (0 = no limit). The run can be continued with --resume.
        warmup_steps, lr_scale: lrate = lr_scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Eq. 3).
        schedule: "noam" (Eq. 3) or "cosine" (linear warm-up to ``lr``, then a half cosine to 0 at the last step).
        lr: the peak learning rate of the cosine schedule (Eq. 3 sets its own).
        optimizer: "adam" (§5.3; ``weight_decay`` is an L2 term in the gradient) or "adamw" (decoupled weight
            decay, applied to the weight matrices of linear and convolution layers only).
        beta1, beta2, adam_eps: Adam's (§5.3: 0.9, 0.98, 1e-9). weight_decay: 0 in the paper.
        label_smoothing: eps_ls (§5.4: 0.1).
        clip_norm: gradient-norm clipping (0 = off).
        eval_every: validate every this many steps (0 = once per epoch).
        bleu_samples: validation sentences translated greedily for BLEU at each validation (0 = skip).
        bleu_tokenize: sacreBLEU's tokenizer for that BLEU ("13a", "intl", "char", ...).
        nat_iterations, nat_length_candidates: task cmlm: the mask-predict rounds and length candidates of
            the validation translations.
        patience: stop after this many validations without a better validation loss (0 = never).
        save_every: also write a checkpoint every this many steps between validations (0 = only at
            validations). Checkpoints bound the work a crash or kill loses; --resume continues exactly.
        keep_checkpoints: how many recent step checkpoints to keep besides last and best.
        nonfinite_limit: an update whose loss or gradient is NaN or infinite is skipped (never applied to
            the weights) and counted; this many such updates in a row stop the run (0 = never stop).
        log_every: steps between progress lines in metrics.jsonl.
        device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "mps".
        precision: "auto" (bf16 autocast on CUDA when supported, else fp32), "fp32", "bf16", "fp16".
        threads: torch CPU threads (0 = torch's default).
        gradient_checkpointing: keep only each layer's input for backward and recompute the rest (less
            memory for about one more forward pass; the same gradients). See tformer.nn.gradient_checkpointing.
        compile: run the model and loss through ``torch.compile`` (falls back to eager, with a warning, if
            compiling fails). Pays off on GPUs for long runs; compiling takes tens of seconds.
        parallel: with several processes (torchrun): "ddp" = every rank holds the whole model and the
            gradients are averaged (DistributedDataParallel); "fsdp" = weights, gradients and Adam's state
            are sharded across the ranks, each layer gathered just for its forward and backward (PyTorch's
            FSDP, ``fully_shard``), for models whose training state does not fit one device.
    """

    max_tokens: int = 4096
    accumulate: int = 1
    max_steps: int = 0
    max_epochs: int = 0
    max_minutes: float = 0.0
    warmup_steps: int = 4000
    lr_scale: float = 1.0
    schedule: str = "noam"
    lr: float = 1e-3
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 0.0
    eval_every: int = 0
    bleu_samples: int = 200
    bleu_tokenize: str = "13a"
    nat_iterations: int = 10
    nat_length_candidates: int = 3
    patience: int = 0
    save_every: int = 0
    keep_checkpoints: int = 3
    nonfinite_limit: int = 5
    log_every: int = 50
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    gradient_checkpointing: bool = False
    compile: bool = False
    parallel: str = "ddp"

    def __post_init__(self) -> None:
        check(self.max_tokens >= 1, "train.max_tokens must be >= 1")
        check(self.accumulate >= 1, "train.accumulate must be >= 1")
        check(self.max_steps >= 0 and self.max_epochs >= 0, "train.max_steps and train.max_epochs must be >= 0")
        check(self.max_steps > 0 or self.max_epochs > 0, "set train.max_steps or train.max_epochs (> 0)")
        check(self.max_minutes >= 0, "train.max_minutes must be >= 0")
        check(self.warmup_steps >= 1, "train.warmup_steps must be >= 1")
        check(self.lr_scale > 0, "train.lr_scale must be positive")
        check(self.schedule in ("noam", "cosine"), f"train.schedule must be noam or cosine, got {self.schedule!r}")
        check(self.lr > 0, "train.lr must be positive")
        check(self.optimizer in ("adam", "adamw"), f"train.optimizer must be adam or adamw, got {self.optimizer!r}")
        check(self.adam_eps >= 0 and self.weight_decay >= 0, "train.adam_eps and train.weight_decay must be >= 0")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1 and train.beta2 must be in [0, 1)")
        check(0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)")
        check(self.clip_norm >= 0, "train.clip_norm must be >= 0")
        check(self.eval_every >= 0 and self.bleu_samples >= 0 and self.patience >= 0, "negative train setting")
        check(self.keep_checkpoints >= 0 and self.log_every >= 1, "train.keep_checkpoints >= 0, log_every >= 1")
        check(self.save_every >= 0 and self.nonfinite_limit >= 0, "train.save_every and nonfinite_limit must be >= 0")
        check(self.device in ("auto", "cpu", "cuda", "mps"), f"train.device: unknown device {self.device!r}")
        check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}")
        check(self.parallel in ("ddp", "fsdp"), f"train.parallel must be ddp or fsdp, got {self.parallel!r}")
        check(self.nat_iterations >= 1 and self.nat_length_candidates >= 1,
               "train.nat_iterations and train.nat_length_candidates must be >= 1")
        from tformer.evaluation.bleu import check_tokenizer

        try:
            check_tokenizer(self.bleu_tokenize)
        except TformerError as e:
            raise ConfigError(f"train.bleu_tokenize: {e}") from None


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: what ``tformer train CONFIG.yaml`` reads.

    ``task`` picks what is trained (see :mod:`tformer.tasks`): "translation" (the default) reads
    parallel text into the encoder-decoder. For it, ``model`` holds a preset name and any
    :class:`TransformerConfig` fields to change; the vocabulary sizes and special-token ids come from
    the trained tokenizer. ``seed`` fixes the
    initialisation, the dropout masks and the batch order; ``null`` draws one, which the run reports and
    records in its ``config.yaml`` (so the run can be resumed and repeated).
    """

    run_dir: str = "runs/default"
    task: str = "translation"
    seed: int | None = 1
    data: DataConfig = DataConfig()
    model: dict = dataclasses.field(default_factory=lambda: {"preset": "small"})
    train: TrainConfig = TrainConfig(max_steps=1000)

    def __post_init__(self) -> None:
        import importlib

        check(self.seed is None or 0 <= self.seed < 2**64, f"seed must be in [0, 2**64) or null, got {self.seed}")
        check(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        check(isinstance(self.model, dict), f"model must be a mapping (preset: ..., d_model: ...), got {self.model!r}")
        # each task validates its model and data sections now, not after tokenizing
        importlib.import_module(f"tformer.tasks.{self.task}").check_config(self)

    def model_config(self, vocab_size: int, tgt_vocab_size: int | None = None, *,
                     config_class: type[TransformerConfig] | None = None, **ids: int) -> TransformerConfig:
        """The :class:`TransformerConfig` (or ``config_class``, e.g. :class:`CMLMConfig`) of this run for the
        given vocabulary (and special-token ids)."""
        config_class = config_class or TransformerConfig
        spec = dict(self.model)
        preset = spec.pop("preset", "small")
        check(preset in MODEL_PRESETS, f"model.preset must be one of {MODEL_PRESETS}, got {preset!r}")
        fixed = {"vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "unk_id"}
        check(not fixed & set(spec), f"model: {', '.join(sorted(fixed & set(spec)))} come(s) from the tokenizer")
        separate = {"tgt_vocab_size": tgt_vocab_size, "share_embeddings": False} if tgt_vocab_size is not None else {}
        base = getattr(TransformerConfig, preset)(vocab_size=vocab_size).to_dict()
        return from_dict(config_class, {**base, **separate, **spec, **ids}, where="model")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_run_config(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config and apply ``key=value`` overrides (dotted keys, YAML values).

    Raises:
        ConfigError: missing file, bad YAML, unknown key or bad value, in one line.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8, a date, an int too long
        raise ConfigError(f"{path} is not valid YAML: {(str(e) or type(e).__name__).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, ValueError, RecursionError):
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        node = d
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    try:
        return from_dict(RunConfig, d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def dump_run_config(cfg: RunConfig) -> str:
    """The YAML text of a resolved run config."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
