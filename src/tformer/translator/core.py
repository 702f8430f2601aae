"""The Translator: a model, its tokenizers and the decoding engine together (text in, text out). What it shows
of the model's attention while translating is in :mod:`tformer.translator.inspection`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from tformer.console import log
from tformer.console import progress as progress_bar
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.generation import (
    PAPER_BEAM_SIZE,
    Capabilities,
    Feature,
    GenerationOptions,
    capabilities_of,
)
from tformer.generation.ensemble import Ensemble
from tformer.generation.options import MASK_PREDICT_ITERATIONS, MASK_PREDICT_LENGTHS
from tformer.generation.processors import prefix_tensor
from tformer.generation.search import length_limits, search, search_nbest
from tformer.models.cmlm.model import CMLM
from tformer.models.registry import load_pretrained
from tformer.models.transformer.model import Transformer
from tformer.translator.inspection import AttentionInspection

MODEL_SUBDIR = "model"


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Transformer | CMLM:
    """The encoder-decoder saved in ``model_dir``: a :class:`Transformer` or a non-autoregressive :class:`CMLM`,
    as its config.json names it (:func:`tformer.models.registry.load_pretrained`, which also reads older folders).

    Raises:
        TformerError: a missing or damaged folder, or a model of another family, in one line.
    """
    model = load_pretrained(model_dir, map_location=map_location)
    if not isinstance(model, (Transformer, CMLM)):
        raise TformerError(f"{model_dir} holds a model of class {type(model).__name__}: translating needs an "
                           "encoder-decoder (a Transformer or a CMLM)")
    return model


# settings by position, as tformer 0.1.0's signatures took them (then max_tokens): translate(texts, 4) = beam 4
TRANSLATE_POSITIONAL = ("beam_size", "max_len", "min_len", "length_penalty")
NBEST_POSITIONAL = ("beam_size", "nbest", "max_len", "min_len", "length_penalty")


def _max_tokens_by_position(options, values: tuple, names: tuple[str, ...], max_tokens: int) -> tuple[tuple, int]:
    """0.1.0 took ``max_tokens`` by position after the settings ``names``: split it off when all were given."""
    if options is not None and not isinstance(options, GenerationOptions) and len(values) == len(names):
        return values[:-1], values[-1]
    return values, max_tokens


def same_vocabularies(a: Vocabularies, b: Vocabularies) -> bool:
    """Whether two runs tokenize alike on both sides (their tokenizer files hold the same tokenizers)."""
    return a.src.to_json() == b.src.to_json() and a.tgt.to_json() == b.tgt.to_json()


class Translator(AttentionInspection):
    """Translate sentences with a trained :class:`Transformer` (or non-autoregressive :class:`CMLM`) and its
    :class:`Vocabularies`; or with several models as one (:meth:`ensemble`)."""

    def __init__(self, model: Transformer | CMLM, vocabs: Vocabularies, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.vocabs = vocabs
        self.device = torch.device(device)
        self.members: list[Transformer | CMLM] = [self.model]  # the models that decode together; the first: model

    @classmethod
    def ensemble(cls, translators: Sequence[Translator]) -> Translator:
        """One Translator whose models decode together: each step's distribution the mean of theirs (fairseq's
        ensembles, :class:`~tformer.generation.ensemble.Ensemble`), with greedy or beam search; each model keeps its
        own KV cache. ``model`` is the first one (its capabilities and limits speak for the ensemble).

        Raises:
            TformerError: a model that cannot decode in an ensemble (a CMLM), models on different devices or with
                different max_len, or runs whose tokenizers differ (they must share the source and target
                vocabularies), in one line.
        """
        if not translators:
            raise TformerError("an ensemble needs at least one translator")
        first = translators[0]
        for n, t in enumerate(translators, start=1):
            t.capabilities.require(Feature.ENSEMBLE, what="decoding several models together")
            if not same_vocabularies(first.vocabs, t.vocabs):
                raise TformerError(f"ensemble model {n} has other tokenizers than model 1: the models of an ensemble "
                                   "must share the source and target vocabularies (the same tokenizer files)")
            if t.device != first.device:
                raise TformerError(f"ensemble model {n} is on {t.device}, model 1 on {first.device}: use one device")
            if t.model.cfg.max_len != first.model.cfg.max_len:
                raise TformerError(f"ensemble model {n} has max_len {t.model.cfg.max_len}, model 1 "
                                   f"{first.model.cfg.max_len}: the models of an ensemble must have the same")
        out = cls(first.model, first.vocabs, first.device)
        out.members = [m for t in translators for m in t.members]
        Ensemble(out.members)  # the special ids and output sizes agree (one-line error otherwise)
        return out

    @property
    def capabilities(self) -> Capabilities:
        """What the model decodes with (:class:`tformer.generation.Capabilities`): ask it, not the model's class."""
        return capabilities_of(self.model)

    @property
    def non_autoregressive(self) -> bool:
        """True for a model that decodes by mask-predict (a CMLM): ``capabilities.supports(Feature.MASK_PREDICT)``."""
        return self.capabilities.supports(Feature.MASK_PREDICT)

    def decoding_options(self, options: GenerationOptions | None = None, /, *values, what: str = "translate()",
                         names: tuple[str, ...] = (), **settings) -> GenerationOptions:
        """The settings :meth:`translate` decodes with: ``options`` with the keyword ``settings`` applied, refused
        in one line (naming ``what``) when they ask for what the model does not support, and the Translator's
        defaults filled in: beam size 4 (§6.1) with beam search (1 when sampling); 10 rounds over 3 lengths with
        mask-predict."""
        opts = GenerationOptions.of(options, *values, names=names, **settings)
        caps = self.capabilities
        caps.check(opts, what)
        if caps.supports(Feature.BEAM):
            opts = opts.with_defaults(beam_size=1 if opts.do_sample else PAPER_BEAM_SIZE)
        if caps.supports(Feature.MASK_PREDICT):
            opts = opts.with_defaults(iterations=MASK_PREDICT_ITERATIONS, length_candidates=MASK_PREDICT_LENGTHS)
        return opts

    @classmethod
    def from_pretrained(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Translator:
        """Load ``run_dir/model`` (config.json + model.safetensors) and the run's tokenizer files.

        ``run_dir`` may also be a folder that holds config.json, model.safetensors and the tokenizer itself.
        """
        d = Path(run_dir)
        if not d.is_dir():
            raise TformerError(f"{d} is a file, not a run directory" if d.exists() else f"run directory not found: {d}")
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise TformerError("device cuda was asked for but no CUDA device is available")
        model_dir = d / MODEL_SUBDIR if (d / MODEL_SUBDIR).is_dir() else d
        if not (model_dir / "model.safetensors").is_file():
            raise TformerError(f"no trained model in {d} (expected {d / MODEL_SUBDIR / 'model.safetensors'})")
        return cls(load_model(model_dir, map_location=device), Vocabularies.load(d), device)

    def quantized(self) -> Translator:
        """A CPU translator whose linear layers run in int8 (dynamic quantization, see
        :mod:`tformer.nn.quantize`): faster decoding, slightly different outputs. This one is unchanged."""
        from tformer.nn.quantize import quantize_dynamic_int8

        quantized = [Translator(quantize_dynamic_int8(m), self.vocabs, "cpu") for m in self.members]
        return quantized[0] if len(quantized) == 1 else Translator.ensemble(quantized)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model (``directory/model``) and tokenizer files so that :meth:`from_pretrained` reads them."""
        if len(self.members) > 1:
            raise TformerError("an ensemble has no one folder to save: save the Translator of each model")
        d = Path(directory)
        self.model.save_pretrained(d / MODEL_SUBDIR)
        self.vocabs.save(d)

    def _encode(self, texts: Sequence[str], warn) -> list[list[int] | None]:
        """Source ids + EOS per sentence (None for an empty one), cut to the model's maximum length."""
        if isinstance(texts, str):
            raise TformerError("translate() takes a list of sentences, not one string")
        eos, limit = self.model.cfg.eos_id, self.model.cfg.max_len
        out: list[list[int] | None] = []
        for n, ids in enumerate(self.vocabs.src.encode_batch(list(texts)), start=1):
            if not ids:
                out.append(None)
                continue
            if len(ids) + 1 > limit:
                warn(f"warning: sentence {n} has {len(ids)} tokens; truncated to the model's maximum of "
                     f"{limit - 1}")
                ids = ids[: limit - 1]
            out.append(ids + [eos])
        return out

    def _batches(self, ids: list[list[int] | None], max_tokens: int):
        """Yield (sentence indices, padded source (B, S)) for the non-empty sentences, shortest first,
        each batch under ``max_tokens`` padded source tokens."""
        order = sorted((i for i, s in enumerate(ids) if s is not None), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= max_tokens:
                end += 1
            chunk = order[start:end]
            src = torch.full((len(chunk), len(ids[chunk[-1]])), self.model.cfg.pad_id, dtype=torch.long)  # (B, S)
            for row, i in enumerate(chunk):
                src[row, : len(ids[i])] = torch.tensor(ids[i])
            yield chunk, src.to(self.device)
            start = end

    @torch.no_grad()
    def translate(self, texts: Sequence[str], options: GenerationOptions | None = None, *values, max_tokens: int = 4096,
                  progress: bool = False, warn=None, prefixes: Sequence[str | None] | None = None,
                  **settings) -> list[str]:
        """Translate ``texts``, batched by length under ``max_tokens`` padded source tokens.

        Empty sentences translate to empty strings; over-long ones are truncated with a warning.

            translator.translate(["Ein Hund läuft."], beam_size=4)
            translator.translate(["Ein Hund läuft."], GenerationOptions(beam_size=4, max_len=64))

        Args:
            options: the decoding settings (:class:`tformer.generation.GenerationOptions`), completed by
                :meth:`decoding_options`: beam size 4 (§6.1) unless given, max_len each sentence's own source
                length + 50 (§6.1) or for a CMLM its length predictor's limit; a CMLM decodes by mask-predict
                (``iterations`` 10, ``length_candidates`` 3). Settings the model does not support are refused.
            **settings: fields of :class:`GenerationOptions` as keywords (``beam_size=4``, ``max_len``,
                ``min_len``, ``length_penalty``, ``do_sample`` with ``temperature``, ``top_k``, ``top_p``,
                ``seed``; ``iterations``, ``length_candidates``; ``monotonic_window``, ``monotonic_window_back``;
                ``no_repeat_ngram_size``, ``repetition_penalty``), applied over ``options``.
            max_tokens: padded source tokens per batch.
            progress: show a progress bar (stderr).
            warn: where warnings go (default: stderr).
            prefixes: one per sentence (None or "" = none): target-language text each translation starts with. It
                is tokenized alone and its tokens are forced as the first outputs (with the model's own scores),
                then decoding goes on freely. An empty sentence still translates to "".
        """
        return self.texts(self.translate_ids(texts, options, *values, max_tokens=max_tokens, progress=progress,
                                             warn=warn, prefixes=prefixes, **settings))

    def texts(self, outputs: Sequence[Sequence[int]]) -> list[str]:
        """The texts of output ids such as :meth:`translate_ids` gives ([] -> "")."""
        return [self.vocabs.tgt.decode(list(ids)) if ids else "" for ids in outputs]

    @torch.no_grad()
    def translate_ids(self, texts: Sequence[str], options: GenerationOptions | None = None, *values,
                      max_tokens: int = 4096, progress: bool = False, warn=None,
                      prefixes: Sequence[str | None] | None = None, **settings) -> list[list[int]]:
        """What :meth:`translate` decodes, as target ids: each sentence's output up to and including its EOS (or
        cut at the length limit), [] for an empty sentence. The settings are :meth:`translate`'s; its texts are
        ``vocabs.tgt.decode`` of these. :meth:`alignment_rates` reads these ids as they were decoded."""
        values, max_tokens = _max_tokens_by_position(options, values, TRANSLATE_POSITIONAL, max_tokens)
        opts = self.decoding_options(options, *values, names=TRANSLATE_POSITIONAL, **settings)
        pad = self.model.cfg.pad_id
        rows = self._decode(texts, opts, prefixes, "translate()", max_tokens, progress, warn)  # (L,) padded
        return [[t for t in row.tolist() if t != pad] if row is not None else [] for row in rows]

    @torch.no_grad()
    def translate_nbest(self, texts: Sequence[str], options: GenerationOptions | None = None, *values,
                        max_tokens: int = 4096, progress: bool = False, warn=None,
                        prefixes: Sequence[str | None] | None = None, **settings) -> list[list[tuple[str, float]]]:
        """The ``nbest`` best translations of each sentence with their scores (log-probability / lp), best first.

        Settings and ``prefixes`` as for :meth:`translate`; ``nbest`` defaults to the beam size (4). An empty
        sentence gets ``[("", 0.0)]``. With a repetition penalty a score sums the penalised log-probabilities.
        """
        nbest = self.translate_nbest_ids(texts, options, *values, max_tokens=max_tokens, progress=progress,
                                         warn=warn, prefixes=prefixes, **settings)
        return [[(self.texts([ids])[0], s) for ids, s in hyps] for hyps in nbest]

    @torch.no_grad()
    def translate_nbest_ids(self, texts: Sequence[str], options: GenerationOptions | None = None, *values,
                            max_tokens: int = 4096, progress: bool = False, warn=None,
                            prefixes: Sequence[str | None] | None = None,
                            **settings) -> list[list[tuple[list[int], float]]]:
        """What :meth:`translate_nbest` decodes, as target ids (each up to and including its EOS, or cut at the
        length limit) with their scores; ``[([], 0.0)]`` for an empty sentence."""
        self.capabilities.require(Feature.NBEST, what="translate_nbest()")
        values, max_tokens = _max_tokens_by_position(options, values, NBEST_POSITIONAL, max_tokens)
        opts = self.decoding_options(options, *values, what="translate_nbest()", names=NBEST_POSITIONAL, **settings)
        opts = opts.with_defaults(nbest=opts.beam_size)
        rows = self._decode(texts, opts, prefixes, "translate_nbest()", max_tokens, progress, warn, nbest=True)
        return [[(list(h.tokens), h.score) for h in row] if row is not None else [([], 0.0)] for row in rows]

    def _decode(self, texts: Sequence[str], opts: GenerationOptions, prefixes: Sequence[str | None] | None,
                what: str, max_tokens: int, progress: bool, warn, nbest: bool = False) -> list:
        """Each sentence's output row (L,) padded with pad_id, or its n-best list; None for an empty one."""
        ids = self._encode(texts, warn or log)
        forced = self._prefix_ids(prefixes, len(ids), what)
        out: list = [None] * len(ids)
        for chunk, src in progress_bar(list(self._batches(ids, max_tokens)), enabled=progress, unit="batch"):
            for i, row in zip(chunk, self._search(src, opts, forced, chunk, nbest), strict=True):
                out[i] = row
        return out

    def _prefix_ids(self, prefixes: Sequence[str | None] | None, n: int, what: str) -> list[list[int]] | None:
        """Each sentence's prefix as target ids ([] for none), or None when no sentence has one."""
        if prefixes is None:
            return None
        if isinstance(prefixes, str) or len(prefixes) != n:
            raise TformerError(f"{what} got {n} sentences but " + ("one string" if isinstance(prefixes, str) else
                               f"{len(prefixes)} prefixes") + ": give one prefix per sentence (None or '' for none)")
        ids = [self.vocabs.tgt.encode(p)[: self.model.cfg.max_len - 1] if p else [] for p in prefixes]
        if not any(ids):
            return None
        self.capabilities.require(Feature.FORCED_PREFIX, what=f"{what} with prefixes")
        return ids

    def _search(self, src: Tensor, opts: GenerationOptions, prefixes: list[list[int]] | None, chunk: list[int],
                nbest: bool = False):
        """Decode a batch (B, S) of sentences ``chunk``: (B, L) ids, or with ``nbest`` the n-best lists. One model
        without prefixes decodes as its ``generate`` does; an ensemble or prefixes go to the engines here."""
        prefix = None if prefixes is None else prefix_tensor([prefixes[i] for i in chunk], self.device)  # (B, P)
        if len(self.members) == 1 and prefix is None:
            return self.model.generate_nbest(src, opts) if nbest else self.model.generate(src, opts)
        decoder = self.model if len(self.members) == 1 else Ensemble(self.members)
        limits = length_limits(src, self.model.cfg.pad_id, opts.max_len, self.model.cfg.max_len)  # (B,)
        return (search_nbest if nbest else search)(decoder, src, opts, max_len=limits, prefix=prefix)
