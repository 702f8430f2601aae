"""The configuration base: frozen, validated dataclasses, their dict and JSON forms, and the shared validators.

Every model family's config (:class:`tformer.TransformerConfig`, the CMLM's, BERT's, GPT's, ViT's) is a
:class:`Config`: immutable (derive a changed one with :meth:`Config.replace`, which validates again), checked in
``__post_init__`` with the validators here (one wording for what every family checks: heads dividing d_model,
dropout probabilities, activation and norm names, the attention settings; :meth:`Config.check_stack` bundles them),
and read from mappings with unknown keys rejected everywhere (a misspelled key is an error, never silently
dropped). The JSON files are read and written by :mod:`tformer.io.files` (one wording for a bad file).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from tformer.errors import ConfigError, TformerError
from tformer.io.files import read_json, write_json

__all__ = ["ACTIVATIONS", "ATTENTION_KINDS", "CROSS_ATTENTION_KINDS", "NORMS", "NORM_TYPES", "AttentionConfig",
           "Config", "ConfigError", "CrossAttentionConfig", "TformerError", "check", "check_activation",
           "check_attention", "check_choice", "check_cross_attention", "check_heads", "check_norm", "from_dict"]

ATTENTION_KINDS = ("full", "reference", "chunked", "sliding", "linformer", "lsh")  # tformer.nn.attention_algorithms
CROSS_ATTENTION_KINDS = ("dot", "location", "monotonic")  # tformer.nn.cross_attention
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")  # the FFN's non-linearities (tformer.nn.feedforward)
NORMS = ("post", "pre")  # where the norm sits: LayerNorm(x + Sublayer(x)) (the paper) or x + Sublayer(LayerNorm(x))
NORM_TYPES = ("layer", "rms")

C = TypeVar("C")
ConfigT = TypeVar("ConfigT", bound="Config")


# ---- the base class ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Base of every configuration dataclass (declare subclasses ``@dataclass(frozen=True)``).

    Subclasses validate their fields in ``__post_init__`` with the ``check_*`` methods (fields by name) and functions
    (values) of this module, which raise :class:`ConfigError` with one line in one wording for every family::

        def __post_init__(self) -> None:
            self.check_positive("vocab_size")
            self.check_stack()  # heads divide d_model, d_ff, layers, dropouts, activation, norm
    """

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        """A copy with ``changes`` applied and validated again (wrong types and unknown keys are errors)."""
        return from_dict(type(self), {**self.to_dict(), **changes})

    saved_only_if_set: ClassVar[tuple[str, ...]] = ()
    """Fields that a saved folder's config.json holds only when they differ from their defaults (fields added after
    folders were written: a folder of a model that does not use them stays what it was; loading fills them in)."""

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (nested configs as mappings), as YAML and JSON hold it."""
        return dataclasses.asdict(self)

    def saved_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :attr:`saved_only_if_set` fields that hold their defaults: what a saved
        folder's config.json records."""
        fields, defaults = self.to_dict(), type(self).__dataclass_fields__
        for name in self.saved_only_if_set:
            if getattr(self, name) == defaults[name].default:
                del fields[name]
        return fields

    @classmethod
    def from_dict(cls: type[ConfigT], d: Any, where: str = "") -> ConfigT:
        """Build from a mapping; unknown keys and wrong types are one-line :class:`ConfigError` s.

        ``where`` is the key path of ``d`` in its file (e.g. "model"), put in front of error messages.
        """
        return from_dict(cls, d, where=where)

    def save_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load_json(cls: type[ConfigT], path: str | os.PathLike) -> ConfigT:
        """Read a config written by :meth:`save_json`.

        Raises:
            ConfigError: a missing, unreadable or invalid file, in one line naming it.
        """
        doc = read_json(path)
        try:
            return from_dict(cls, doc)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    # ---- validators of fields, for __post_init__ (the value checks are the functions below) --------------
    def check_positive(self, *names: str, nullable: bool = False) -> None:
        """Each named field is > 0 (or None, when ``nullable``)."""
        for name in names:
            v = getattr(self, name)
            if nullable:
                check(v is None or v > 0, f"{name} must be positive or null, got {v}")
            else:
                check(v > 0, f"{name} must be positive, got {v}")

    def check_at_least(self, minimum: int, *names: str) -> None:
        """Each named field is >= ``minimum``."""
        for name in names:
            v = getattr(self, name)
            check(v >= minimum, f"{name} must be >= {minimum}, got {v}")

    def check_dropout(self, *names: str) -> None:
        """Each named field is a dropout probability in [0, 1)."""
        for name in names:
            p = getattr(self, name)
            check(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")

    def check_stack(self, *, layers: tuple[str, ...] = ("num_layers",),
                    dropouts: tuple[str, ...] = ("dropout", "attention_dropout"), d_head: int | None = None) -> None:
        """What every Transformer stack's config checks alike (§3): h heads dividing d_model (:func:`check_heads`),
        a positive d_ff and LayerNorm epsilon, at least one of each of ``layers``, the ``dropouts`` in [0, 1), the
        FFN's activation, and the norm's place and kind where the config has ``norm`` and ``norm_type`` fields
        (ViT's layers are always pre-norm LayerNorm)."""
        check_heads(self.d_model, self.num_heads, d_head)  # type: ignore[attr-defined]
        self.check_positive("d_ff")
        self.check_at_least(1, *layers)
        self.check_dropout(*dropouts)
        check_activation(self.activation)  # type: ignore[attr-defined]
        if hasattr(self, "norm"):
            check_norm(self.norm)
        if hasattr(self, "norm_type"):
            check_choice("norm_type", self.norm_type, NORM_TYPES)
        self.check_positive("layer_norm_eps")


# ---- validators ------------------------------------------------------------------------------------
def check(cond: bool, msg: str) -> None:
    """Raise :class:`ConfigError` (``msg``, one line) unless ``cond``."""
    if not cond:
        raise ConfigError(msg)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` of the setting ``name`` is one of ``choices``."""
    check(value in choices, f"{name} must be one of {choices}, got {value!r}")


def check_activation(value: str, name: str = "activation") -> None:
    """An FFN non-linearity the toolkit has (:data:`ACTIVATIONS`)."""
    check_choice(name, value, ACTIVATIONS)


def check_norm(value: str, name: str = "norm") -> None:
    """The norm's place: "post" (the paper's LayerNorm(x + Sublayer(x))) or "pre" (x + Sublayer(LayerNorm(x)))."""
    check_choice(name, value, NORMS)


def check_heads(d_model: int, num_heads: int, d_head: int | None = None) -> None:
    """h heads of d_k = d_model / h each (§3.2.2): h divides d_model, unless the head width ``d_head`` is set."""
    check(d_model > 0 and num_heads > 0, "d_model and num_heads must be positive")
    check(d_head is not None or d_model % num_heads == 0,
          f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")


@dataclass(frozen=True)
class AttentionConfig(Config):
    """How Eq. 1 is computed for long inputs: exact everywhere, or approximate for memory linear in length.

    The algorithms are entries of the registry :mod:`tformer.nn.attention_algorithms`, one file each; this
    dataclass lives here so that the model configs can nest it without importing torch.

    Attributes:
        kind: "full" = Eq. 1 through PyTorch's fused SDPA (the default, the paper's); "reference" = Eq. 1
            written out (slow, exact, forms the weights: the oracle of the others); "chunked" = the same
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
        check(self.kind in ATTENTION_KINDS, f"attention kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        for name in ("chunk_size", "window", "linformer_k", "lsh_bucket_size", "lsh_rounds"):
            check(getattr(self, name) >= 1, f"attention {name} must be >= 1, got {getattr(self, name)}")
        check(0 <= self.lsh_seed < 2**63, f"attention lsh_seed must be in [0, 2**63), got {self.lsh_seed}")


def check_attention(cfg: Any, *, causal: bool, relative: bool = False, kinds: tuple[str, ...] | None = None
                     ) -> None:
    """Validate a model config's ``attention`` field (a mapping becomes an :class:`AttentionConfig`).

    Args:
        causal: the model's only self-attention is causal (a decoder-only model), which linformer and lsh
            cannot do.
        relative: the model adds a relative position bias to the scores, which needs full or chunked attention.
        kinds: the kinds this model supports; None = every kind (:data:`ATTENTION_KINDS`).
    """
    if isinstance(cfg.attention, dict):
        object.__setattr__(cfg, "attention", from_dict(AttentionConfig, cfg.attention, where="attention"))
    check(isinstance(cfg.attention, AttentionConfig),
           f"attention must be an AttentionConfig or a mapping, got {type(cfg.attention).__name__}")
    kind = cfg.attention.kind
    kinds = ATTENTION_KINDS if kinds is None else kinds
    check(kind in kinds, f"{type(cfg).__name__} supports attention kinds {kinds}, got {kind!r}")
    check(not (causal and kind in ("linformer", "lsh")), f"{kind} attention cannot be causal (use it in encoders)")
    check(not (relative and kind in ("sliding", "linformer", "lsh")), "relative positions need full or chunked "
                                                                        f"attention, got {kind!r}")


@dataclass(frozen=True)
class CrossAttentionConfig(Config):
    """Which encoder-decoder attention a decoder's layers use (the registry :mod:`tformer.nn.cross_attention`).

    Attributes:
        kind: "dot" = the paper's scaled dot-product attention over the source (§3.2.3; computed as
            :class:`AttentionConfig` says); "location" = location-aware attention (Chorowski et al., 2015): the
            scores also see a convolution of the previous target position's attention weights
            (:mod:`tformer.nn.location_attention`); "monotonic" = hard monotonic attention, trained through its
            expected alignment and decoded hard (Raffel et al., 2017; :mod:`tformer.nn.monotonic_attention`).
        location_channels: location: k, the number of convolution filters of Eq. 8 (Chorowski et al.: 10).
        location_kernel: location: the filters' width, odd, centred on the position (2r + 1).
        monotonic_bias: monotonic: the initial value of the energy's learned scalar bias r (Raffel et al.: -4).
        monotonic_noise: monotonic: the standard deviation of the Gaussian noise added to the pre-sigmoid
            energies in training (Raffel et al.: 1); 0 = none (deterministic).
    """

    kind: str = "dot"
    location_channels: int = 10
    location_kernel: int = 31
    monotonic_bias: float = -4.0
    monotonic_noise: float = 1.0

    def __post_init__(self) -> None:
        check_choice("cross_attention kind", self.kind, CROSS_ATTENTION_KINDS)
        check(self.location_channels >= 1, f"cross_attention location_channels must be >= 1, got "
                                           f"{self.location_channels}")
        check(self.location_kernel >= 1 and self.location_kernel % 2 == 1,
              f"cross_attention location_kernel must be odd and >= 1, got {self.location_kernel}")
        check(self.monotonic_noise >= 0, f"cross_attention monotonic_noise must be >= 0, got {self.monotonic_noise}")


def check_cross_attention(cfg: Any) -> None:
    """Validate a model config's ``cross_attention`` field (a mapping becomes a :class:`CrossAttentionConfig`)."""
    if isinstance(cfg.cross_attention, dict):
        object.__setattr__(cfg, "cross_attention", from_dict(CrossAttentionConfig, cfg.cross_attention,
                                                             where="cross_attention"))
    check(isinstance(cfg.cross_attention, CrossAttentionConfig),
          f"cross_attention must be a CrossAttentionConfig or a mapping, got {type(cfg.cross_attention).__name__}")


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


