"""Frozen, validated configuration dataclasses and their YAML form.

Every knob of the model lives in :class:`TransformerConfig`. Names follow the paper
(d_model, num_heads, d_ff, num_layers, P_drop, eps_ls). Configs are immutable: derive a
changed one with :func:`dataclasses.replace` or :meth:`TransformerConfig.replace`, which
validates again. Unknown keys are rejected everywhere (a misspelled key is an error, never
silently dropped).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from tformer.errors import TformerError
from tformer.fileio import atomic_write_text

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
POSITIONAL = ("sinusoidal", "learned", "relative")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")
NORMS = ("post", "pre")
NORM_TYPES = ("layer", "rms")
ATTENTION_KINDS = ("full", "chunked", "sliding", "linformer", "lsh")

C = TypeVar("C")


class ConfigError(TformerError):
    """A configuration value or key is invalid. The message is one line meant for users."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class AttentionConfig:
    """How Eq. 1 is computed for long inputs: exact everywhere, or approximate for memory linear in length.

    The algorithms are in :mod:`tformer.model.long_attention`; this dataclass lives here so that the
    model configs can nest it without importing torch.

    Attributes:
        kind: "full" = Eq. 1 through PyTorch's fused SDPA (the default, the paper's); "chunked" = the same
            result, exact, computed in query x key blocks with a running softmax, so that the Tq x Tk matrix
            is never stored (Rabe & Staats, 2021); "sliding" = each position attends only to the positions
            within ``window`` of it (Longformer's local attention, Beltagy et al., 2020); "linformer" = keys
            and values projected along the sequence to ``linformer_k`` rows (Wang et al., 2020; not causal,
            self-attention only); "lsh" = shared-QK attention within locality-sensitive-hash buckets
            (Reformer, Kitaev et al., 2020; not causal).
        chunk_size: chunked: rows of one query block and one key block.
        window: sliding: how far a position sees, each side (|i - j| <= window), or back when causal
            (0 <= i - j <= window).
        linformer_k: linformer: k, the projected length of keys and values (Linformer §4).
        lsh_bucket_size: lsh: the chunk length after sorting by bucket; about T / bucket_size buckets are drawn.
        lsh_rounds: lsh: hash rounds, combined with their log-sum-exp weights (Reformer §2, multi-round).
        lsh_seed: lsh: the seed of the random rotations in evaluation (training draws fresh ones each call).
    """

    kind: str = "full"
    chunk_size: int = 512
    window: int = 256
    linformer_k: int = 256
    lsh_bucket_size: int = 64
    lsh_rounds: int = 4
    lsh_seed: int = 0

    def __post_init__(self) -> None:
        _check(self.kind in ATTENTION_KINDS, f"attention kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        for name in ("chunk_size", "window", "linformer_k", "lsh_bucket_size", "lsh_rounds"):
            _check(getattr(self, name) >= 1, f"attention {name} must be >= 1, got {getattr(self, name)}")
        _check(0 <= self.lsh_seed < 2**63, f"attention lsh_seed must be in [0, 2**63), got {self.lsh_seed}")


def _check_attention(cfg: Any, *, causal: bool, relative: bool = False, kinds: tuple[str, ...] = ATTENTION_KINDS
                     ) -> None:
    """Validate a model config's ``attention`` field (a mapping becomes an :class:`AttentionConfig`).

    Args:
        causal: the model's only self-attention is causal (a decoder-only model), which linformer and lsh
            cannot do.
        relative: the model adds a relative position bias to the scores, which needs full or chunked attention.
        kinds: the kinds this model supports.
    """
    if isinstance(cfg.attention, dict):
        object.__setattr__(cfg, "attention", from_dict(AttentionConfig, cfg.attention, where="attention"))
    _check(isinstance(cfg.attention, AttentionConfig),
           f"attention must be an AttentionConfig or a mapping, got {type(cfg.attention).__name__}")
    kind = cfg.attention.kind
    _check(kind in kinds, f"{type(cfg).__name__} supports attention kinds {kinds}, got {kind!r}")
    _check(not (causal and kind in ("linformer", "lsh")), f"{kind} attention cannot be causal (use it in encoders)")
    _check(not (relative and kind in ("sliding", "linformer", "lsh")), "relative positions need full or chunked "
                                                                        f"attention, got {kind!r}")


@dataclass(frozen=True)
class TransformerConfig:
    """The encoder-decoder Transformer (§3, Table 3).

    Attributes:
        vocab_size: source vocabulary size (and target vocabulary when ``tgt_vocab_size`` is None).
        tgt_vocab_size: target vocabulary size for separate vocabularies; None = shared.
        d_model: model width d_model (§3.1).
        num_heads: number of attention heads h; d_k = d_v = d_model / h (§3.2.2) unless ``d_kv`` is set.
        d_kv: the width d_k = d_v of one head when it is not d_model / h (T5's ``d_kv``); None = d_model / h.
            W^Q, W^K, W^V map d_model -> h * d_kv and W^O maps h * d_kv -> d_model.
        d_ff: inner width of the position-wise feed-forward network (§3.3).
        num_encoder_layers: N for the encoder stack.
        num_decoder_layers: N for the decoder stack.
        dropout: P_drop, applied to each sub-layer output before the residual add and to the sums
            of embeddings and positional encodings (§5.4).
        attention_dropout: dropout on the attention weights (not in the paper; 0 = off).
        activation_dropout: dropout after the FFN activation (not in the paper; 0 = off).
        activation: FFN non-linearity: "relu" (paper), "gelu" (exact), "gelu_tanh" (GPT-2's approximation)
            or "silu" (Marian's "swish").
        norm: "post" = LayerNorm(x + Sublayer(x)) as in the paper; "pre" = x + Sublayer(LayerNorm(x))
            with a final LayerNorm after each stack.
        norm_type: "layer" = LayerNorm (Ba et al., as the paper); "rms" = RMSNorm, x / sqrt(mean(x²) + eps) * g,
            no mean subtraction and no bias (T5).
        layer_norm_eps: epsilon of every normalisation layer (LayerNorm or RMSNorm).
        bias: biases in the attention projections W^Q, W^K, W^V, W^O and the FFN's W_1, W_2 (Eq. 2);
            false = none (T5).
        scale_attention: divide the scores Q Kᵀ by sqrt(d_k) (Eq. 1); false = no scaling (T5, whose
            initialisation folds the factor into W^Q).
        positional: "sinusoidal" (§3.5) or "learned" position embeddings added to the token embeddings, or
            "relative": no absolute positions; instead a learned bias per head and bucketed relative distance
            is added to the self-attention scores of every layer (T5; Shaw et al., 2018; Raffel et al., 2020).
        relative_buckets: the number of relative-distance buckets (``positional="relative"``): half of them
            for exact small distances, half logarithmically spaced up to ``relative_max_distance``; the
            encoder splits them between the two directions.
        relative_max_distance: distances at or beyond this share the last bucket.
        sinusoidal_layout: "interleaved" = the paper's PE(pos, 2i) = sin, PE(pos, 2i+1) = cos;
            "halves" = all sines then all cosines (Marian / fairseq), same frequencies.
        max_len: the longest sequence the position table covers.
        scale_embedding: multiply token embeddings by sqrt(d_model) (§3.4).
        scale_output: multiply the decoder output by d_model^-0.5 before the pre-softmax linear layer (T5,
            where that layer is the embedding matrix).
        final_dropout: P_drop also on each stack's output, after its final norm (T5; pre-norm only).
        share_embeddings: one embedding matrix for source and target (needs a shared vocabulary).
        tie_output: the pre-softmax linear layer reuses the target embedding matrix (§3.4).
        output_bias: a bias on the pre-softmax linear layer (Marian's final_logits_bias).
        pad_id: padding id; bos_id: the decoder's start token; eos_id: end of sentence; unk_id: unknown.
        init_std: std of the normal initialisation of embeddings; None = d_model ** -0.5.
        attention: how self-attention is computed (:class:`AttentionConfig`). The encoder's self-attention uses
            it; so does the decoder's masked self-attention, except linformer and lsh, which cannot be causal
            (full there). Cross-attention is chunked when this is chunked and full otherwise.
        pointer_generator: the copy mechanism (See et al., 2017): the output distribution mixes the vocabulary
            softmax with the last layer's cross-attention over the source tokens, with a learned gate
            (:mod:`tformer.model.copy`). Needs one vocabulary for source and target.
    """

    vocab_size: int
    tgt_vocab_size: int | None = None
    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "post"
    norm_type: str = "layer"
    layer_norm_eps: float = 1e-5
    bias: bool = True
    d_kv: int | None = None
    scale_attention: bool = True
    positional: str = "sinusoidal"
    sinusoidal_layout: str = "interleaved"
    relative_buckets: int = 32
    relative_max_distance: int = 128
    max_len: int = 1024
    scale_embedding: bool = True
    scale_output: bool = False
    final_dropout: bool = False
    share_embeddings: bool = True
    tie_output: bool = True
    output_bias: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3
    init_std: float | None = None
    attention: AttentionConfig = AttentionConfig()
    pointer_generator: bool = False

    def __post_init__(self) -> None:
        _check(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        # the decoder's causal self-attention uses full attention where the kind cannot be causal
        _check_attention(self, causal=False, relative=self.positional == "relative")
        _check(
            self.tgt_vocab_size is None or self.tgt_vocab_size > 0,
            f"tgt_vocab_size must be positive or null, got {self.tgt_vocab_size}",
        )
        _check(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        _check(self.d_kv is None or self.d_kv > 0, f"d_kv must be positive or null, got {self.d_kv}")
        _check(
            self.d_kv is not None or self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        _check(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        _check(self.num_encoder_layers >= 1, "num_encoder_layers must be >= 1")
        _check(self.num_decoder_layers >= 1, "num_decoder_layers must be >= 1")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            p = getattr(self, name)
            _check(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")
        _check(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        _check(self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        _check(self.norm_type in NORM_TYPES, f"norm_type must be one of {NORM_TYPES}, got {self.norm_type!r}")
        _check(not self.final_dropout or self.norm == "pre", "final_dropout needs norm: pre (a final norm per stack)")
        _check(self.positional in POSITIONAL, f"positional must be one of {POSITIONAL}, got {self.positional!r}")
        _check(
            self.sinusoidal_layout in SINUSOIDAL_LAYOUTS,
            f"sinusoidal_layout must be one of {SINUSOIDAL_LAYOUTS}, got {self.sinusoidal_layout!r}",
        )
        _check(self.positional != "sinusoidal" or self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        _check(self.relative_buckets >= 4, f"relative_buckets must be >= 4, got {self.relative_buckets}")
        _check(
            self.relative_max_distance > self.relative_buckets // 2,
            f"relative_max_distance ({self.relative_max_distance}) must exceed relative_buckets // 2 "
            f"({self.relative_buckets // 2})",
        )
        _check(self.max_len >= 2, f"max_len must be >= 2, got {self.max_len}")
        _check(self.layer_norm_eps > 0, "layer_norm_eps must be positive")
        _check(self.init_std is None or self.init_std > 0, f"init_std must be positive or null, got {self.init_std}")
        _check(
            not (self.share_embeddings and self.tgt_vocab_size not in (None, self.vocab_size)),
            "share_embeddings needs one shared vocabulary: set tgt_vocab_size to null or share_embeddings to false",
        )
        for name in ("pad_id", "bos_id", "eos_id", "unk_id"):
            i = getattr(self, name)
            _check(0 <= i < min(self.vocab_size, self.target_vocab_size), f"{name}={i} is outside the vocabulary")
        _check(self.eos_id != self.pad_id, "eos_id must differ from pad_id")
        _check(not self.pointer_generator or self.tgt_vocab_size in (None, self.vocab_size),
               "pointer_generator copies source ids into the output: it needs one shared vocabulary "
               "(tgt_vocab_size null)")

    # ---- derived values -------------------------------------------------------------------
    @property
    def target_vocab_size(self) -> int:
        """The target vocabulary size (equal to ``vocab_size`` when the vocabulary is shared)."""
        return self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2), or ``d_kv`` when set."""
        return self.d_model // self.num_heads if self.d_kv is None else self.d_kv

    # ---- presets (Table 3) ----------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> TransformerConfig:
        """A very small model for tests: d_model 32, 2+2 layers, 4 heads."""
        base = dict(d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2, num_decoder_layers=2, max_len=128)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def small(cls, vocab_size: int = 8000, **kw: Any) -> TransformerConfig:
        """A CPU-sized model: d_model 256, 3+3 layers, 4 heads, d_ff 1024."""
        base = dict(d_model=256, num_heads=4, d_ff=1024, num_encoder_layers=3, num_decoder_layers=3)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def base(cls, vocab_size: int = 37000, **kw: Any) -> TransformerConfig:
        """The paper's base model (Table 3): N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1."""
        base = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=0.1)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def big(cls, vocab_size: int = 37000, **kw: Any) -> TransformerConfig:
        """The paper's big model (Table 3): N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3."""
        base = dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6, num_decoder_layers=6, dropout=0.3)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def t5_small(cls, vocab_size: int = 32128, **kw: Any) -> TransformerConfig:
        """The text-to-text Transformer (T5 v1.0, Raffel et al., 2020) as a configuration of this model, at
        T5-small's size: d_model 512, 6+6 layers, 8 heads of 64, d_ff 2048, 32 relative buckets up to 128.

        T5's differences from the paper: relative position bias instead of absolute positions, pre-norm
        with RMSNorm (eps 1e-6) and a final norm and dropout per stack, no biases, unscaled attention
        scores and embeddings, the decoder output times d_model^-0.5 before the tied output layer,
        dropout also on attention weights and FFN activations, embeddings drawn N(0, 1) (T5's initialisation),
        and decoding starts from the pad id 0 (eos 1, unk 2). ``tformer.interop.from_hf_t5`` loads Hugging Face
        T5 weights into this configuration.
        """
        p = kw.get("dropout", 0.1)
        base = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=p,
                    attention_dropout=p, activation_dropout=p, activation="relu", norm="pre", norm_type="rms",
                    layer_norm_eps=1e-6, bias=False, scale_attention=False, positional="relative",
                    relative_buckets=32, relative_max_distance=128, max_len=512, scale_embedding=False,
                    scale_output=True, final_dropout=True, share_embeddings=True, tie_output=True, init_std=1.0,
                    pad_id=0, bos_id=0, eos_id=1, unk_id=2)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    # ---- (de)serialisation ----------------------------------------------------------------
    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with ``changes`` applied and validated again."""
        return from_dict(type(self), {**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        return from_dict(cls, d)

    def save_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> TransformerConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8; an int too long; nested too deep
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        try:
            return from_dict(cls, d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


@dataclass(frozen=True)
class CMLMConfig(TransformerConfig):
    """The non-autoregressive translator (:class:`tformer.model.nat.CMLM`): the encoder-decoder of
    :class:`TransformerConfig` whose decoder attends to the whole (partly masked) target, plus a
    target-length predictor on the encoder (Ghazvininejad et al., 2019, "Mask-Predict").

    Attributes (beyond :class:`TransformerConfig`'s):
        max_target_len: the length predictor's classes are 0..max_target_len target tokens (decoding never goes
            past ``max_len`` positions either).
        length_loss_weight: the length predictor's cross-entropy, summed over sentences, is added to the summed
            token loss with this weight (the trainer divides both by the hidden tokens; see :mod:`tformer.tasks.cmlm`).

    The mask token is one more row of the target embedding, id ``target_vocab_size`` (:attr:`mask_id`); the
    output layer never predicts it.
    """

    max_target_len: int = 256
    length_loss_weight: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.max_target_len >= 1, f"max_target_len must be >= 1, got {self.max_target_len}")
        _check(self.length_loss_weight >= 0, f"length_loss_weight must be >= 0, got {self.length_loss_weight}")
        _check(not self.pointer_generator, "pointer_generator is for the autoregressive decoder, not a CMLM")
        _check(self.positional != "relative", "a CMLM needs absolute positions (sinusoidal or learned)")

    @property
    def mask_id(self) -> int:
        """The id of the mask token: one past the target vocabulary."""
        return self.target_vocab_size


def seq2seq_config_class(d: dict[str, Any]) -> type[TransformerConfig]:
    """Which encoder-decoder a saved ``config.json`` mapping describes: :class:`CMLMConfig` (it has the
    length predictor's keys) or :class:`TransformerConfig`."""
    return CMLMConfig if isinstance(d, dict) and "max_target_len" in d else TransformerConfig


def from_dict(cls: type[C], d: Any, where: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types in one line.

    Nested dataclass fields are built recursively. ``where`` is the dotted key path of ``d``
    (e.g. "train"), used in error messages.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix}expected a mapping for {cls.__name__}, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in d if k not in known)
    if unknown:
        raise ConfigError(
            f"{prefix}unknown key(s) for {cls.__name__}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    required = [n for n, f in known.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in d]
    if missing:
        raise ConfigError(f"{prefix}missing required key(s) for {cls.__name__}: {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    hints = _resolved_types(cls)
    for name, value in d.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            kwargs[name] = value if isinstance(value, tp) else from_dict(tp, value, where=key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def _resolved_types(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, str, bool, X | None, tuple)."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (inner, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float's range
                number = math.inf
        elif isinstance(value, str):  # YAML 1.1 reads 1e-9 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(number):  # NaN passes no comparison and slips past range checks
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


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
        _check(self.format in DATA_FORMATS, f"data.format must be one of {DATA_FORMATS}, got {self.format!r}")
        _check(self.tokenizer in TOKENIZER_MODELS, f"data.tokenizer must be one of {TOKENIZER_MODELS}")
        _check(self.vocab_size >= 16, f"data.vocab_size must be >= 16, got {self.vocab_size}")
        _check(self.max_len >= 1, f"data.max_len must be >= 1, got {self.max_len}")
        _check(self.max_len_ratio >= 0, "data.max_len_ratio must be >= 0")
        _check(self.mixup >= 0, "data.mixup must be >= 0")

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
            memory for about one more forward pass; the same gradients). See tformer.model.checkpointing.
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
        _check(self.max_tokens >= 1, "train.max_tokens must be >= 1")
        _check(self.accumulate >= 1, "train.accumulate must be >= 1")
        _check(self.max_steps >= 0 and self.max_epochs >= 0, "train.max_steps and train.max_epochs must be >= 0")
        _check(self.max_steps > 0 or self.max_epochs > 0, "set train.max_steps or train.max_epochs (> 0)")
        _check(self.max_minutes >= 0, "train.max_minutes must be >= 0")
        _check(self.warmup_steps >= 1, "train.warmup_steps must be >= 1")
        _check(self.lr_scale > 0, "train.lr_scale must be positive")
        _check(self.schedule in ("noam", "cosine"), f"train.schedule must be noam or cosine, got {self.schedule!r}")
        _check(self.lr > 0, "train.lr must be positive")
        _check(self.optimizer in ("adam", "adamw"), f"train.optimizer must be adam or adamw, got {self.optimizer!r}")
        _check(self.adam_eps >= 0 and self.weight_decay >= 0, "train.adam_eps and train.weight_decay must be >= 0")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1 and train.beta2 must be in [0, 1)")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)")
        _check(self.clip_norm >= 0, "train.clip_norm must be >= 0")
        _check(self.eval_every >= 0 and self.bleu_samples >= 0 and self.patience >= 0, "negative train setting")
        _check(self.keep_checkpoints >= 0 and self.log_every >= 1, "train.keep_checkpoints >= 0, log_every >= 1")
        _check(self.save_every >= 0 and self.nonfinite_limit >= 0, "train.save_every and nonfinite_limit must be >= 0")
        _check(self.device in ("auto", "cpu", "cuda", "mps"), f"train.device: unknown device {self.device!r}")
        _check(self.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}")
        _check(self.parallel in ("ddp", "fsdp"), f"train.parallel must be ddp or fsdp, got {self.parallel!r}")
        _check(self.nat_iterations >= 1 and self.nat_length_candidates >= 1,
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

        _check(self.seed is None or 0 <= self.seed < 2**64, f"seed must be in [0, 2**64) or null, got {self.seed}")
        _check(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        _check(isinstance(self.model, dict), f"model must be a mapping (preset: ..., d_model: ...), got {self.model!r}")
        # each task validates its model and data sections now, not after tokenizing
        importlib.import_module(f"tformer.tasks.{self.task}").check_config(self)

    def model_config(self, vocab_size: int, tgt_vocab_size: int | None = None, *,
                     config_class: type[TransformerConfig] | None = None, **ids: int) -> TransformerConfig:
        """The :class:`TransformerConfig` (or ``config_class``, e.g. :class:`CMLMConfig`) of this run for the
        given vocabulary (and special-token ids)."""
        config_class = config_class or TransformerConfig
        spec = dict(self.model)
        preset = spec.pop("preset", "small")
        _check(preset in MODEL_PRESETS, f"model.preset must be one of {MODEL_PRESETS}, got {preset!r}")
        fixed = {"vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "unk_id"}
        _check(not fixed & set(spec), f"model: {', '.join(sorted(fixed & set(spec)))} come(s) from the tokenizer")
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
