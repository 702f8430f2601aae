"""How to decode: one frozen, validated settings object for every model kind and every entry point.

``GenerationOptions`` holds the settings of all the decoding engines (beam search §6.1, sampling, mask-predict);
it is checked once, when it is made, with one-line errors. A setting left at ``None`` takes the default of the
entry point that decodes (``model.generate``: greedy search; ``Translator.translate``: beam 4, §6.1; a CMLM:
10 rounds over 3 lengths). Which settings a model kind may use is its :class:`~tformer.generation.Capabilities`:
:meth:`GenerationOptions.asks` names the features a set of options needs.

    >>> opts = GenerationOptions(beam_size=4, length_penalty=0.6, max_len=64)
    >>> GenerationOptions.of(opts, beam_size=2)          # keywords override, and are checked again
    GenerationOptions(beam_size=2, ...)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tformer.errors import TformerError
from tformer.generation.capabilities import Feature
from tformer.nn.cache import MonotonicWindow

PAPER_BEAM_SIZE = 4  # §6.1: "beam search with a beam size of 4 and length penalty alpha = 0.6"
MASK_PREDICT_ITERATIONS = 10  # a CMLM's default decoder passes T (mask-predict)
MASK_PREDICT_LENGTHS = 3  # ... and most likely lengths decoded side by side


_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": None}  # the fields only sampling reads


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings, validated on creation (a :class:`~tformer.errors.TformerError` names the bad one).

    Attributes:
        beam_size: 1 = greedy search, more = beam search (§6.1: 4); None = the entry point's default.
        nbest: hypotheses returned per sentence by the n-best entry points (``generate_nbest``,
            ``translate_nbest``), at most ``beam_size``; None = all ``beam_size`` of them.
        length_penalty: alpha of the GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^alpha (§6.1: 0.6).
        min_len: EOS is forbidden before this many output tokens.
        max_len: the most output tokens, EOS included; None = the source length + 50 (§6.1), or for a
            CMLM its length predictor's limit, or for a language model 32 new tokens.
        do_sample: draw each token from the model's distribution instead of searching (beam size 1),
            reshaped by ``temperature``, ``top_k`` (0 = off) and ``top_p`` (1 = off), seeded by ``seed``.
        iterations: mask-predict's decoder passes T (None = 10).
        length_candidates: mask-predict's most likely lengths decoded side by side (None = 3).
        monotonic_window: decode under a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`): each step's
            encoder-decoder attention sees only the source positions [focus - monotonic_window_back,
            focus + monotonic_window], where the focus is the previous step's attention peak and never moves
            backwards; None = no window, else >= 1 (a window reaching nothing ahead would never move).
        monotonic_window_back: how far behind the focus the window reaches (with ``monotonic_window``).
        no_repeat_ngram_size: n > 0: no output repeats an n-gram of its own tokens (a token that would complete
            one already produced is forbidden; Paulus et al., 2018, for summaries); 0 = off.
        repetition_penalty: p > 0; p != 1: the score of each token the output already holds is divided by p where
            positive and multiplied by p where negative (CTRL, Keskar et al., 2019, as Hugging Face's
            RepetitionPenaltyLogitsProcessor; p > 1 discourages repeats); only the output's own tokens count, never
            the source (:mod:`tformer.generation.processors`); 1 = off.
    """

    beam_size: int | None = None
    nbest: int | None = None
    length_penalty: float = 0.6
    min_len: int = 0
    max_len: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    iterations: int | None = None
    length_candidates: int | None = None
    monotonic_window: int | None = None
    monotonic_window_back: int = 1
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name in ("beam_size", "nbest", "max_len", "iterations", "length_candidates"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TformerError(f"{name} must be >= 1, got {value}")
        if self.nbest is not None and self.beam_size is not None and self.nbest > self.beam_size:
            raise TformerError(f"nbest must be in [1, beam_size={self.beam_size}], got {self.nbest}")
        # a window reaching nothing ahead would hold the focus where it is: it must see at least one position on
        if self.monotonic_window is not None and self.monotonic_window < 1:
            raise TformerError(f"monotonic_window must be >= 1, got {self.monotonic_window}")
        if self.monotonic_window_back < 0:
            raise TformerError(f"monotonic_window_back must be >= 0, got {self.monotonic_window_back}")
        if self.no_repeat_ngram_size < 0:
            raise TformerError(f"no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}")
        if not 0 < self.repetition_penalty < float("inf"):
            raise TformerError(f"repetition_penalty must be a positive number (1 = off), got {self.repetition_penalty}")
        if self.min_len < 0:
            raise TformerError(f"min_len must be >= 0, got {self.min_len}")
        if self.max_len is not None and self.min_len > self.max_len:
            raise TformerError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        if self.do_sample:
            self._check_sampling()
        else:  # settings that only shape sampling would be silently ignored: refuse them
            given = [name for name, default in _SAMPLING_DEFAULTS.items() if getattr(self, name) != default]
            if given:
                it = "it" if len(given) == 1 else "them"
                raise TformerError(f"{' and '.join(given)} only {'applies' if len(given) == 1 else 'apply'} when "
                                   f"sampling: add do_sample or leave {it} out")

    def _check_sampling(self) -> None:
        if self.beam_size not in (None, 1):
            raise TformerError("sampling draws one hypothesis per sentence: use beam_size=1 with do_sample=True")
        if self.nbest is not None:
            raise TformerError("n-best lists and their scores come from beam search: do not combine nbest with "
                               "do_sample")
        if self.temperature <= 0:
            raise TformerError(f"temperature must be > 0 for sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TformerError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise TformerError(f"top_k must be >= 0, got {self.top_k}")

    @classmethod
    def of(cls, options: Any = None, /, *values: Any, names: tuple[str, ...] = (), **settings: Any
           ) -> GenerationOptions:
        """``options`` (default: all defaults) with ``settings``, keywords named as the fields, applied.

        ``values`` are settings given by position, as the signatures of tformer 0.1.0 took them
        (``model.generate(src, 4, 64)`` = ``beam_size=4, max_len=64``): ``names`` says which field each one is.
        When the first of them stands where ``options`` goes, it is read as such a value too.

        Raises:
            TypeError: a keyword that is no field, too many positional settings, or one given twice (as Python
                does for function arguments).
            TformerError: the result is not valid.
        """
        if options is not None and not isinstance(options, GenerationOptions) and names:
            options, values = None, (options, *values)
        if values:
            if len(values) > len(names):
                raise TypeError(f"at most {len(names)} settings by position ({', '.join(names)}), got {len(values)}")
            for name, value in zip(names, values, strict=False):
                if name in settings:
                    raise TypeError(f"got multiple values for setting {name!r}")
                settings[name] = value
        if options is None:
            options = _DEFAULT
        elif not isinstance(options, GenerationOptions):
            raise TypeError(f"options must be a GenerationOptions, got {type(options).__name__} "
                            "(give settings as keywords, e.g. beam_size=4)")
        unknown = sorted(settings.keys() - _FIELDS)
        if unknown:
            raise TypeError(f"unexpected generation setting {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
        return dataclasses.replace(options, **settings) if settings else options

    def with_defaults(self, **defaults: Any) -> GenerationOptions:
        """These options with each named setting that is None set to its given default (checked again)."""
        missing = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **missing) if missing else self

    def asks(self) -> list[tuple[Feature, str]]:
        """The features these options need from a model, each with the setting that asks for it."""
        asked = []
        if self.beam_size is not None and self.beam_size > 1:
            asked.append((Feature.BEAM, f"beam_size={self.beam_size}"))
        if self.nbest is not None and self.nbest > 1:
            asked.append((Feature.NBEST, f"nbest={self.nbest}"))
        if self.do_sample:
            asked.append((Feature.SAMPLING, "do_sample=True"))
        if self.min_len:
            asked.append((Feature.MIN_LENGTH, f"min_len={self.min_len}"))
        for name in ("iterations", "length_candidates"):
            if getattr(self, name) is not None:
                asked.append((Feature.MASK_PREDICT, f"{name}={getattr(self, name)}"))
        if self.monotonic_window is not None:
            asked.append((Feature.MONOTONIC_WINDOW, f"monotonic_window={self.monotonic_window}"))
        if self.no_repeat_ngram_size:
            asked.append((Feature.NO_REPEAT_NGRAM, f"no_repeat_ngram_size={self.no_repeat_ngram_size}"))
        if self.repetition_penalty != 1.0:
            asked.append((Feature.REPETITION_PENALTY, f"repetition_penalty={self.repetition_penalty}"))
        return asked

    def window(self) -> MonotonicWindow | None:
        """The monotonic window these options ask for, or None."""
        if self.monotonic_window is None:
            return None
        return MonotonicWindow(ahead=self.monotonic_window, back=self.monotonic_window_back)


_DEFAULT = GenerationOptions()
_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationOptions))
