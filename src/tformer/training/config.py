"""A training run's configuration: the YAML that ``tformer train`` reads.

Sections: ``task`` (the name of what is trained), the task's own section named after it (``cmlm:
{iterations: 10}``: its settings), ``data``, ``model``, ``train``. The sections shared by every task are
typed here (:class:`DataConfig`, :class:`TrainConfig`); the task's section is typed by the task's settings
class, and the ``model`` section by the task's model config (:mod:`tformer.tasks`). This module imports no
task: :func:`tformer.training.config_file.read_run_config` (the YAML file and ``key=value`` overrides) checks
the shared sections, and the task registry checks the rest where the run is built
(``tformer.tasks.load_run_config``, before any data is read).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from tformer.config import check, from_dict
from tformer.data.tokenizer import TOKENIZER_KINDS
from tformer.models.transformer.config import TransformerConfig

MODEL_PRESETS = ("tiny", "small", "base", "big")
DATA_FORMATS = ("auto", "text", "tsv", "jsonl")
TOKENIZER_MODELS = tuple(TOKENIZER_KINDS)  # ("bpe", "unigram", "symbols"): the data layer's registry
PRECISIONS = ("auto", "fast", "fp32", "bf16", "fp16")
DEFAULT_TASK = "translation"
OUTPUT_VOCABS = ("all", "target")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples are and how text becomes subwords.

    Attributes:
        train_src, train_tgt: plain-text files, one sentence a line (``.gz`` read transparently);
            or, for ``format: tsv|jsonl``, ``train_src`` alone holds both sides.
        valid_src, valid_tgt: validation files, same form (optional but needed for early stopping).
        test_src, test_tgt: test files, same form, scored once at the end of the run by the model chosen on
            validation (tasks classify and lm).
        data_dir: prefix for relative paths above (e.g. ``../shared/data/multi30k``).
        format: "auto" (from the suffix), "text", "tsv" or "jsonl".
        vocab_size: subword vocabulary size; tokenizer: "bpe", "unigram" or "symbols" (one token per
            whitespace-separated symbol, e.g. characters or phonemes); shared_vocab: one
            vocabulary for both languages (needed to tie all three matrices).
        max_len: examples with more subwords than this (on either side) are dropped (and counted).
        max_len_ratio: pairs whose length ratio exceeds this are dropped; 0 = no limit.
        output_vocab: which target tokens the model's output layer scores: "all", or "target": only the subwords
            of the training targets and the special tokens (a translation run with a joint vocabulary: the other
            language's subwords are never produced, and training skips their rows of the pre-softmax layer,
            :attr:`TransformerConfig.output_vocab`).
        cache_dir: where a translation run's tokenizer and tokenized training corpus are cached, memory-mapped
            (:mod:`tformer.data.binarized`); "" = ``<run_dir>/cache``. Name one folder to share them between runs.
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
    test_src: str = ""
    test_tgt: str = ""
    cache_dir: str = ""
    output_vocab: str = "all"

    def __post_init__(self) -> None:
        check(self.output_vocab in OUTPUT_VOCABS,
              f"data.output_vocab must be one of {OUTPUT_VOCABS}, got {self.output_vocab!r}")
        check(self.format in DATA_FORMATS, f"data.format must be one of {DATA_FORMATS}, got {self.format!r}")
        check(self.tokenizer in TOKENIZER_MODELS, f"data.tokenizer must be one of {TOKENIZER_MODELS}")
        check(self.vocab_size >= 16, f"data.vocab_size must be >= 16, got {self.vocab_size}")
        check(self.max_len >= 1, f"data.max_len must be >= 1, got {self.max_len}")
        check(self.max_len_ratio >= 0, "data.max_len_ratio must be >= 0")

    def path(self, name: str) -> str:
        """A data path with ``data_dir`` applied ('' stays '')."""
        p = getattr(self, name)
        return os.path.join(self.data_dir, p) if p and self.data_dir and not os.path.isabs(p) else p


@dataclass(frozen=True)
class GuidedAttentionConfig:
    """The guided attention loss (Tachibana et al., 2017): a penalty on encoder-decoder attention far from the
    diagonal, for tasks whose output follows its input in order (:mod:`tformer.training.guided_attention`).

    Attributes:
        weight: the loss's weight beside the cross-entropy (per target token); 0 = off.
        sigma: g of W_nt = 1 - exp(-(n/N - t/T)^2 / (2 g^2)), the width of the band that costs little
            (Tachibana et al.: 0.2).
        layers: the decoder layers it applies to (negative indices count from the last: -1); null = all.
        heads: the heads of those layers it applies to (negative from the last); null = all.

    Cost: the weights come from a side path beside the fast attention (:class:`~tformer.nn.attention.AttentionProbe`),
    softmax(q_h k_hᵀ) of each chosen head, kept for the backward pass. With layers and heads null that is every
    cross-attention's full (B, H, T, S) weights in every decoder layer: about the memory and time of running each
    decoder layer's cross-attention a second time, written out. Naming one layer (e.g. [-1]) or a few heads makes
    it that share of the cost.
    """

    weight: float = 0.0
    sigma: float = 0.2
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check(self.weight >= 0, f"train.guided_attention.weight must be >= 0, got {self.weight}")
        check(self.sigma > 0, f"train.guided_attention.sigma must be positive, got {self.sigma}")
        for name in ("layers", "heads"):
            value = getattr(self, name)
            check(value is None or (len(value) > 0 and len(set(value)) == len(value)),
                  f"train.guided_attention.{name} must be null (all) or a list of distinct indices, got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    def check_model(self, num_layers: int, num_heads: int) -> None:
        """The layers and heads exist in a decoder of ``num_layers`` layers of ``num_heads`` heads (one-line
        ConfigError)."""
        for name, values, count in (("layers", self.layers, num_layers), ("heads", self.heads, num_heads)):
            seen: dict[int, int] = {}  # index modulo count -> the index as written
            for i in values or ():
                check(-count <= i < count, f"train.guided_attention.{name}: {i} is out of range for a decoder with "
                                           f"{count} {name}")
                check(i % count not in seen, f"train.guided_attention.{name}: {seen.get(i % count)} and {i} name the "
                                             f"same one of {count} {name}; give each once")
                seen[i % count] = i


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation (§5.3, §5.4) and the loop around it, the same for every task.

    Attributes:
        max_tokens: token budget of one batch (padded source or target tokens, whichever is larger).
        accumulate: batches whose gradients are summed before one optimizer step.
        max_steps: optimizer steps to run (0 = until max_epochs); max_epochs: passes over the data (0 = no limit).
        max_minutes: wall-clock budget of this invocation (of the whole run, summed over its invocations, with
            ``decay_over: minutes``); when it runs out, training validates, saves and stops (0 = no limit). The
            run can be continued with --resume.
        warmup_steps, lr_scale: lrate = lr_scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Eq. 3).
        schedule: "noam" (Eq. 3) or "cosine" (linear warm-up to ``lr``, then a half cosine to 0 at the last step).
        decay_over: what the cosine schedule's decay spans: "steps" (from the warm-up's end to the run's last
            update) or "minutes" (from the warm-up's end, counted in updates, to the end of train.max_minutes of
            training time: the run ends at lr 0 whatever the machine's speed, if max_steps or max_epochs do not
            end it first; the lr follows the clock, so such a run, resumed or not, is not bit-identical to another).
        lr: the peak learning rate of the cosine schedule (Eq. 3 sets its own).
        optimizer: "adam" (§5.3; ``weight_decay`` is an L2 term in the gradient) or "adamw" (decoupled weight
            decay, applied to the weight matrices of linear and convolution layers only).
        beta1, beta2, adam_eps: Adam's (§5.3: 0.9, 0.98, 1e-9). weight_decay: 0 in the paper.
        label_smoothing: eps_ls (§5.4: 0.1).
        clip_norm: gradient-norm clipping (0 = off).
        eval_every: validate every this many steps (0 = once per epoch).
        patience: stop after this many validations without a better validation loss (0 = never).
        save_every: also write a checkpoint every this many steps between validations (0 = only at
            validations). Checkpoints bound the work a crash or kill loses; --resume continues exactly.
        keep_checkpoints: how many recent step checkpoints to keep besides last and best.
        nonfinite_limit: an update whose loss or gradient is NaN or infinite is skipped (never applied to
            the weights) and counted; this many such updates in a row stop the run (0 = never stop).
        log_every: steps between progress lines in metrics.jsonl.
        tensorboard: also write the metrics as TensorBoard events to ``RUN/tensorboard`` (needs the
            tensorboard extra; see :mod:`tformer.training.metrics`).
        reset_optimizer: at each ``--resume`` with this set, the weights and the position in the data come from the
            checkpoint, but Adam's moments and the learning-rate schedule start afresh (warm-up again, counted from
            the resume step; fine-tuning on a run's own checkpoint, or after changing the optimizer settings).
        device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "mps".
        precision: "auto" (bf16 autocast on a CUDA GPU that has it, else fp16 there; fp32 elsewhere), "fast"
            ("auto", and bf16 also on a CPU with native bf16: AVX512-BF16 or AMX), "fp32", "bf16", "fp16"
            (autocast, with a gradient scaler for fp16; any CPU has both, emulated and slow without native support).
        threads: torch CPU threads (0 = torch's default).
        gradient_checkpointing: keep only each layer's input for backward and recompute the rest (less
            memory for about one more forward pass; the same gradients). See tformer.nn.gradient_checkpointing.
        compile: run the model and loss through ``torch.compile`` (falls back to eager, with a warning, if
            compiling fails). Pays off on GPUs for long runs; compiling takes tens of seconds.
        parallel: with several processes (torchrun): "ddp" = every rank holds the whole model and the
            gradients are averaged (DistributedDataParallel); "fsdp" = weights, gradients and Adam's state
            are sharded across the ranks, each layer gathered just for its forward and backward (PyTorch's
            FSDP, ``fully_shard``), for models whose training state does not fit one device.
        guided_attention: the guided attention loss on the encoder-decoder attention (:class:`GuidedAttentionConfig`;
            off unless its weight is > 0; encoder-decoder tasks only).
    """

    max_tokens: int = 4096
    accumulate: int = 1
    max_steps: int = 0
    max_epochs: int = 0
    max_minutes: float = 0.0
    warmup_steps: int = 4000
    lr_scale: float = 1.0
    schedule: str = "noam"
    decay_over: str = "steps"
    lr: float = 1e-3
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 0.0
    eval_every: int = 0
    patience: int = 0
    save_every: int = 0
    keep_checkpoints: int = 3
    nonfinite_limit: int = 5
    log_every: int = 50
    tensorboard: bool = False
    reset_optimizer: bool = False
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    gradient_checkpointing: bool = False
    compile: bool = False
    parallel: str = "ddp"
    guided_attention: GuidedAttentionConfig = GuidedAttentionConfig()

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
        check(self.decay_over in ("steps", "minutes"), f"train.decay_over must be steps or minutes, got "
                                                       f"{self.decay_over!r}")
        check(self.decay_over == "steps" or (self.schedule == "cosine" and self.max_minutes > 0),
              "train.decay_over: minutes needs train.schedule: cosine and a train.max_minutes > 0")
        check(self.optimizer in ("adam", "adamw"), f"train.optimizer must be adam or adamw, got {self.optimizer!r}")
        check(self.adam_eps >= 0 and self.weight_decay >= 0, "train.adam_eps and train.weight_decay must be >= 0")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1 and train.beta2 must be in [0, 1)")
        check(0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)")
        check(self.clip_norm >= 0, "train.clip_norm must be >= 0")
        check(self.eval_every >= 0 and self.patience >= 0, "negative train setting")
        check(self.keep_checkpoints >= 0 and self.log_every >= 1, "train.keep_checkpoints >= 0, log_every >= 1")
        check(self.save_every >= 0 and self.nonfinite_limit >= 0, "train.save_every and nonfinite_limit must be >= 0")
        check(self.device in ("auto", "cpu", "cuda", "mps"), f"train.device: unknown device {self.device!r}")
        check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}")
        check(self.parallel in ("ddp", "fsdp"), f"train.parallel must be ddp or fsdp, got {self.parallel!r}")


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: what ``tformer train CONFIG.yaml`` reads.

    ``task`` names what is trained (see :mod:`tformer.tasks`): "translation" (the default) reads
    parallel text into the encoder-decoder. The task's settings are the section named after it
    (``cmlm: {iterations: 10}``), held here as ``task_settings``; :meth:`from_dict` and :meth:`to_dict` read and
    write that layout. For translation, ``model`` holds a preset name and any :class:`TransformerConfig`
    fields to change; the vocabulary sizes and special-token ids come from the trained tokenizer. ``seed``
    fixes the initialisation, the dropout masks and the batch order; ``null`` draws one, which the run
    reports and records in its ``config.yaml`` (so the run can be resumed and repeated).
    """

    run_dir: str = "runs/default"
    task: str = DEFAULT_TASK
    seed: int | None = 1
    data: DataConfig = DataConfig()
    model: dict = dataclasses.field(default_factory=lambda: {"preset": "small"})
    train: TrainConfig = TrainConfig(max_steps=1000)
    task_settings: dict = dataclasses.field(default_factory=dict)  # the section named after the task

    def __post_init__(self) -> None:
        check(self.seed is None or 0 <= self.seed < 2**64, f"seed must be in [0, 2**64) or null, got {self.seed}")
        check(isinstance(self.model, dict), f"model must be a mapping (preset: ..., d_model: ...), got {self.model!r}")
        check(isinstance(self.task_settings, dict), f"{self.task}: expected a mapping of the task's settings, "
                                                    f"got {self.task_settings!r}")

    @classmethod
    def from_dict(cls, d: Any) -> RunConfig:
        """A run config from its YAML layout (the task's settings in the section named after the task)."""
        check(isinstance(d, dict), f"expected a mapping for RunConfig, got {type(d).__name__}")
        d = dict(d)
        task = d.get("task", DEFAULT_TASK)
        known = [f.name for f in dataclasses.fields(cls) if f.name != "task_settings"]
        section = task if isinstance(task, str) and task not in known else None  # the task's settings section
        known[2:2] = [section] if section else []  # (listed after run_dir and task)
        unknown = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in d if k not in known)
        check(not unknown, f"unknown key(s) for RunConfig: {', '.join(unknown)} (known: {', '.join(known)}; the "
                           f"task's settings are the section named after it)")
        if section in d:
            d["task_settings"] = d.pop(section)
        return from_dict(cls, d)

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
        check("output_vocab" not in spec, "model.output_vocab comes from the training data: set data.output_vocab")
        separate = {"tgt_vocab_size": tgt_vocab_size, "share_embeddings": False} if tgt_vocab_size is not None else {}
        base = getattr(TransformerConfig, preset)(vocab_size=vocab_size).to_dict()
        return from_dict(config_class, {**base, **separate, **spec, **ids}, where="model")

    def to_dict(self) -> dict[str, Any]:
        """The YAML layout: the task's settings (when it has any) in the section named after it, after ``task``."""
        d = dataclasses.asdict(self)
        settings = d.pop("task_settings")
        out: dict[str, Any] = {}
        for key, value in d.items():
            out[key] = value
            if key == "task" and settings:
                out[self.task] = settings
        return out
