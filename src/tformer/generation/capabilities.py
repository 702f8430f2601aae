"""What a model kind can do at decoding time, declared by the kind and asked by everyone who decodes.

Each model class names its :class:`Capabilities` in a class attribute (``Transformer.capabilities``); the
Translator, the CLI, the server, the plots and the exporters ask it (:meth:`Capabilities.require`,
:meth:`Capabilities.check`) instead of testing the model's class, and a refusal is always one line in one form:

    tformer serve needs beam search, but this model (a non-autoregressive CMLM) supports only
    mask-predict (non-autoregressive decoding)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from tformer.errors import TformerError


class Feature(enum.Enum):
    """One thing a model may support; the value is how messages name it."""

    GREEDY = "greedy search"
    BEAM = "beam search"
    NBEST = "n-best lists"
    SAMPLING = "sampling"
    MIN_LENGTH = "a minimum length (min_len)"
    ATTENTION_MAPS = "encoder-decoder attention maps"
    MASK_PREDICT = "mask-predict (non-autoregressive decoding)"
    MONOTONIC_WINDOW = "a monotonic attention window (monotonic_window)"
    NO_REPEAT_NGRAM = "a ban on repeated n-grams (no_repeat_ngram_size)"
    REPETITION_PENALTY = "a repetition penalty (repetition_penalty)"
    FORCED_PREFIX = "a forced target prefix"
    ENSEMBLE = "ensembles of models"


class AsksFeatures(Protocol):
    """What :meth:`Capabilities.check` reads (a :class:`~tformer.generation.GenerationOptions`)."""

    def asks(self) -> list[tuple[Feature, str]]:
        """The features needed, each with the setting that asks for it."""
        ...


def refusal(what: str, feature: Feature, capabilities: Capabilities) -> str:
    """The one refusal message: ``what`` needs ``feature``, which this model kind does not support."""
    return f"{what} needs {feature.value}, but this model ({capabilities.kind}) supports {capabilities.listed()}"


@dataclass(frozen=True)
class Capabilities:
    """The features of a model kind, and how messages call the kind.

    Attributes:
        kind: the model kind in words, with an article ("an autoregressive Transformer").
        features: what it supports.
    """

    kind: str
    features: frozenset[Feature] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", frozenset(self.features))  # any iterable of features

    def supports(self, feature: Feature) -> bool:
        """Whether ``feature`` is supported."""
        return feature in self.features

    def listed(self) -> str:
        """The supported features in words, in :class:`Feature` order: "only A, B and C", or "no decoding"."""
        names = [f.value for f in Feature if f in self.features]
        if not names:
            return "no decoding"
        return "only " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])

    def require(self, *features: Feature, what: str) -> None:
        """Raise the refusal (a :class:`TformerError`) for the first of ``features`` not supported."""
        for feature in features:
            if feature not in self.features:
                raise TformerError(refusal(what, feature, self))

    def check(self, options: AsksFeatures, what: str) -> None:
        """Refuse ``options`` that ask for a feature not supported, naming the setting that asks for it."""
        for feature, setting in options.asks():
            if feature not in self.features:
                raise TformerError(refusal(f"{what} with {setting}", feature, self))


def capabilities_of(model: Any) -> Capabilities:
    """``model.capabilities``, or none at all for a model that declares none (an encoder, a classifier)."""
    declared = getattr(model, "capabilities", None)
    if isinstance(declared, Capabilities):
        return declared
    return Capabilities(f"a {type(model).__name__}")

