"""Translation: the paper's encoder-decoder trained on parallel text (§5).

Data: two aligned files (or one TSV/JSONL file), a BPE or unigram tokenizer trained on the training
text (shared between the languages by default), pairs filtered by length; the tokenizer and the tokenized training
pairs are cached under ``data.cache_dir`` (memory-mapped: a corpus of WMT's size is tokenized once, and a new run on
the same data, ``--resume`` and every DDP rank read it without tokenizing; :mod:`tformer.data.binarized`).
Loss: teacher-forced, label-smoothed cross-entropy over target tokens (§5.4), with the pre-softmax layer fused into
the loss. Validation: loss, perplexity, and the BLEU of greedy translations of the first
``translation.bleu_samples`` validation sentences (sacreBLEU's ``translation.bleu_tokenize``).

The config: ``task: translation`` (the default) and its section ``translation: {bleu_samples: 200, bleu_tokenize:
13a}``; ``model`` holds a preset and :class:`TransformerConfig` fields.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from tformer.config import ConfigError, check
from tformer.console import log
from tformer.data.batching import Batch, collate
from tformer.data.binarized import BinarizedPairs, cached_pairs, cached_vocabularies, data_source
from tformer.data.corpus import iter_jsonl, iter_parallel, iter_tsv
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.evaluation.bleu import check_tokenizer, corpus_bleu
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer
from tformer.tasks import fine_tune
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.training import guided_attention
from tformer.training.config import GuidedAttentionConfig, RunConfig
from tformer.training.label_smoothing import LossOutput, label_smoothed_loss, linear_label_smoothed_loss
from tformer.translator import Translator


@dataclass
class ParallelData:
    """Tokenized training and validation pairs, and the validation text for BLEU.

    ``train`` is a sequence of (source ids, target ids): the memory-mapped corpus of the cache
    (:class:`tformer.data.binarized.BinarizedPairs`) in a run, or a list.
    """

    vocabs: Vocabularies
    train: Sequence[tuple[Sequence[int], Sequence[int]]]
    valid: list[tuple[list[int], list[int]]] = field(default_factory=list)
    valid_text: list[tuple[str, str]] = field(default_factory=list)


PAIR_READERS: dict[str, Callable[..., Iterator[tuple[str, str]]]] = {
    "text": iter_parallel, "tsv": iter_tsv, "jsonl": iter_jsonl}
"""How each ``data.format`` is read, from the files :func:`corpus_files` names (two for text, else one)."""


def corpus_files(cfg: RunConfig, split: str) -> tuple[list[str], str]:
    """The files of the ``train`` or ``valid`` pairs named in the data config (none if unset), and their format."""
    d = cfg.data
    src, tgt = d.path(f"{split}_src"), d.path(f"{split}_tgt")
    if not src:
        return [], d.format
    fmt = d.format
    if fmt == "auto":
        name = src[:-3] if src.endswith(".gz") else src
        fmt = "tsv" if name.endswith(".tsv") else "jsonl" if name.endswith((".jsonl", ".json")) else "text"
    if fmt != "text":
        return [src], fmt
    if not tgt:
        raise TformerError(f"data.{split}_tgt is not set (plain-text corpora need a source and a target file)")
    return [src, tgt], fmt


def iter_pairs(cfg: RunConfig, split: str) -> Iterator[tuple[str, str]]:
    """The ``train`` or ``valid`` pairs named in the data config, read as they are used."""
    files, fmt = corpus_files(cfg, split)
    return PAIR_READERS[fmt](*files) if files else iter(())


def read_pairs(cfg: RunConfig, split: str) -> list[tuple[str, str]]:
    """Read the ``train`` or ``valid`` pairs named in the data config."""
    return list(iter_pairs(cfg, split))


def data_cache_dir(cfg: RunConfig) -> Path:
    """Where the tokenizer and the tokenized training corpus are cached: ``data.cache_dir``, else the run's
    ``cache/``."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run_dir) / "cache"


def prepare_data(cfg: RunConfig, vocabs: Vocabularies | None = None, max_source_len: int | None = None
                 ) -> ParallelData:
    """The tokenizer (trained unless given) and the training pairs, tokenized and filtered, each cached under
    :func:`data_cache_dir` by fingerprint (:mod:`tformer.data.binarized`: tokenized once, memory-mapped after);
    the validation pairs, tokenized in memory. Reports counts.

    With ``max_source_len``, tokenized sources are cut to that many tokens before filtering (summarization reads
    the start of a long text instead of dropping it)."""
    files, fmt = corpus_files(cfg, "train")
    if not files:
        raise TformerError("no training data: set data.train_src and data.train_tgt")
    source, cache = data_source(files, fmt), data_cache_dir(cfg)
    held: list[list[tuple[str, str]]] = []  # the training text, if read to train the tokenizer: tokenized from here
    if vocabs is None:
        settings = {"tokenizer": cfg.data.tokenizer, "vocab_size": cfg.data.vocab_size, "shared": cfg.data.shared_vocab}
        vocabs = cached_vocabularies(cache, source, settings, lambda: _train_vocabularies(cfg, held))
    train = cached_pairs(cache, source, vocabs, lambda: held.pop() if held else iter_pairs(cfg, "train"),
                         max_len=cfg.data.max_len, max_ratio=cfg.data.max_len_ratio or None,
                         max_source_len=max_source_len)
    held.clear()
    if not train.report.total:
        raise TformerError("no training data: set data.train_src and data.train_tgt")
    if not len(train):
        raise TformerError("every training pair was filtered out (check data.max_len and the files)")

    valid_text = read_pairs(cfg, "valid")
    valid_ids = []
    if valid_text:
        src = vocabs.src.encode_batch([s for s, _ in valid_text])
        if max_source_len is not None:
            src = [ids[:max_source_len] for ids in src]
        valid_ids = list(zip(src, vocabs.tgt.encode_batch([t for _, t in valid_text]), strict=True))
    keep = [i for i, (s, t) in enumerate(valid_ids) if s and t and max(len(s), len(t)) <= cfg.data.max_len]
    if valid_text:
        log(f"valid: kept {len(keep)} of {len(valid_text)} pairs")
    return ParallelData(vocabs, train, [valid_ids[i] for i in keep], [valid_text[i] for i in keep])


def _train_vocabularies(cfg: RunConfig, held: list[list[tuple[str, str]]]) -> Vocabularies:
    """Train the tokenizer on the training text (kept in ``held`` for tokenizing)."""
    text = read_pairs(cfg, "train")
    if not text:
        raise TformerError("no training data: set data.train_src and data.train_tgt")
    t0 = time.perf_counter()
    vocabs = Vocabularies.train([s for s, _ in text], [t for _, t in text], vocab_size=cfg.data.vocab_size,
                                shared=cfg.data.shared_vocab, model=cfg.data.tokenizer)
    log(f"tokenizer: {cfg.data.tokenizer}, vocabulary {vocabs.src.vocab_size}"
        f"{'' if vocabs.shared else f' + {vocabs.tgt.vocab_size}'} ({time.perf_counter() - t0:.1f}s)")
    held.append(text)
    return vocabs


def output_token_ids(data: ParallelData, specials: Sequence[int]) -> np.ndarray:
    """The target tokens a model trained on ``data`` can learn to produce, ascending: every subword of the training
    targets, and ``specials`` (pad, EOS, UNK)."""
    v = data.vocabs.tgt.vocab_size
    if isinstance(data.train, BinarizedPairs):
        seen = data.train.token_ids("tgt", v)
    else:
        seen = np.fromiter(itertools.chain.from_iterable(t for _, t in data.train), dtype=np.int64)
    return np.union1d(seen, np.asarray(specials, dtype=np.int64))


def sequence_loss(model: Transformer, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, eps: float,
                  guided: GuidedAttentionConfig | None = None) -> LossOutput:
    """Teacher-forced label-smoothed loss of a batch (§5.4), summed over real target tokens.

    The same number as ``label_smoothed_loss(model(src, tgt_in), tgt_out, eps, pad)``, computed with
    the pre-softmax layer fused into the loss (no (B, T, V) logits are stored; tested equal). With a restricted
    output vocabulary (``output_vocab``) the softmax and the smoothing run over the scored tokens only
    (:meth:`Transformer.output_layer`).

    With ``guided`` (enabled), the guided attention loss on the cross-attention weights it names is added
    (:func:`tformer.training.guided_attention.with_guided_attention`), from the same forward pass.
    """
    pad = model.cfg.pad_id
    if model.cfg.pointer_generator:  # the output is a mixture, not one linear layer: log P from forward
        return label_smoothed_loss(model(src, tgt_in), tgt_out, eps, pad)
    weight, bias, gold, gold_pad = model.output_layer(tgt_out)  # with output_vocab: its rows and positions only
    if guided is None or not guided.enabled:
        return linear_label_smoothed_loss(model.decoder_states(src, tgt_in), weight, bias, gold, eps, gold_pad)
    hidden, weights = model.decoder_states(src, tgt_in, cross_attention=guided_attention.probe(guided))
    out = linear_label_smoothed_loss(hidden, weight, bias, gold, eps, gold_pad)
    return guided_attention.with_guided_attention(out, weights, src != pad, tgt_out != pad, guided)


@dataclass(frozen=True)
class TranslationSettings(TaskSettings):
    """The ``translation`` section (and translation's part of the ``cmlm`` section).

    Attributes:
        bleu_samples: validation sentences translated (greedily) for BLEU at each validation (0 = skip).
        bleu_tokenize: sacreBLEU's tokenizer for that BLEU ("13a", "intl", "char", ...).
    """

    bleu_samples: int = 200
    bleu_tokenize: str = "13a"

    def __post_init__(self) -> None:
        check(self.bleu_samples >= 0, f"bleu_samples must be >= 0, got {self.bleu_samples}")
        try:
            check_tokenizer(self.bleu_tokenize)
        except TformerError as e:
            raise ConfigError(f"bleu_tokenize: {e}") from None


@register
class TranslationTask(Task):
    """Parallel text -> :class:`tformer.Transformer` (see the module docstring)."""

    name = "translation"
    unit = "pairs"
    Settings = TranslationSettings
    model_class: ClassVar[type[Transformer]] = Transformer
    config_class: ClassVar[type[TransformerConfig]] = TransformerConfig
    guides_attention = True
    restricts_output_vocab = True  # data.output_vocab: target (the training targets' subwords)

    def __init__(self, data: ParallelData, settings: TranslationSettings | None = None,
                 guided: GuidedAttentionConfig | None = None) -> None:
        self.data = data
        self.settings = settings or self.Settings()
        self.guided = guided if guided is not None and guided.enabled else None  # train.guided_attention

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        cls.checked_model_config(cfg)

    @classmethod
    def checked_model_config(cls, cfg: RunConfig) -> TransformerConfig:
        """Validate the model and data sections (one-line ConfigError); returns the model config (for a tiny
        vocabulary; with ``model.init_from``, the pretrained model's)."""
        if fine_tune.init_from(cfg):
            fine_tune.check_fine_tune_config(cfg)
            m = fine_tune.pretrained_translator(cfg).model.cfg
            check(isinstance(m, cls.config_class), f"model.init_from holds a {type(m).__name__} model; task "
                                                   f"{cfg.task} trains a {cls.config_class.__name__}")
        else:
            m = cfg.model_config(vocab_size=64, config_class=cls.config_class)
        check(
            cfg.data.shared_vocab or not cfg.model.get("share_embeddings", False),
            "model.share_embeddings needs data.shared_vocab: true (one vocabulary for both languages)",
        )
        check(
            cfg.data.max_len + 1 <= m.max_len,
            f"data.max_len ({cfg.data.max_len}) + 1 for BOS/EOS exceeds model.max_len ({m.max_len}): "
            f"lower data.max_len or raise model.max_len",
        )
        if cfg.data.output_vocab == "target":
            check(not fine_tune.init_from(cfg), "data.output_vocab: target is for a model trained from scratch: "
                  "model.init_from brings its own output layer")
            check(not m.pointer_generator, "data.output_vocab: target does not combine with model.pointer_generator "
                  "(copying puts any source token in the output)")
        guided = cfg.train.guided_attention
        if guided.enabled and cls.guides_attention:
            check(not m.pointer_generator, "train.guided_attention does not combine with model.pointer_generator")
            guided.check_model(m.num_decoder_layers, m.num_heads)
        return m

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        if fine_tune.init_from(cfg):
            return fine_tune.pretrained_translator(cfg).model.cfg.d_model
        return cfg.model_config(vocab_size=64, config_class=cls.config_class).d_model

    @classmethod
    def prepare_data(cls, cfg: RunConfig, vocabs: Vocabularies | None) -> ParallelData:
        """The task's data: :func:`prepare_data` (a subclass may read it otherwise, e.g. cut long sources)."""
        return prepare_data(cfg, vocabs)

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[TranslationTask, Transformer]:
        pretrained = fine_tune.pretrained_translator(cfg) if fine_tune.init_from(cfg) else None
        vocabs = Vocabularies.load(run_dir) if resume else pretrained.vocabs if pretrained else None
        if resume and pretrained:
            fine_tune.check_same_vocabularies(vocabs, pretrained.vocabs, run_dir)
        data = cls.prepare_data(cfg, vocabs)
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            data.vocabs.save(run_dir)
        settings = cls.settings_from(cfg)
        if pretrained:  # the architecture, weights and tokenizer of model.init_from; a new optimizer and schedule
            return cls(data, settings, cfg.train.guided_attention), fine_tune.start_model(pretrained, cfg,
                                                                                          cls.model_class)
        src_v, tgt_v = data.vocabs.src, data.vocabs.tgt
        scored = output_token_ids(data, (src_v.pad_id, tgt_v.eos_id, src_v.unk_id)) \
            if cfg.data.output_vocab == "target" else None  # the specials as the model config below takes them
        model_cfg = cfg.model_config(
            src_v.vocab_size, None if data.vocabs.shared else tgt_v.vocab_size, config_class=cls.config_class,
            pad_id=src_v.pad_id, bos_id=tgt_v.bos_id, eos_id=tgt_v.eos_id, unk_id=src_v.unk_id,
            **({} if scored is None else {"output_vocab": len(scored)}),
        )
        model = cls.model_class(model_cfg)
        if scored is not None:
            model.set_output_ids(torch.from_numpy(scored))
            log(f"output vocabulary: {len(scored)} of {tgt_v.vocab_size} target tokens (data.output_vocab: target)")
        return cls(data, settings, cfg.train.guided_attention), model

    # -- training --
    def _pairs(self, split: str) -> Sequence[tuple[Sequence[int], Sequence[int]]]:
        return self.data.train if split == "train" else self.data.valid

    def lengths(self, split: str) -> tuple[Sequence[int], Sequence[int]]:
        """Source and target lengths; of a memory-mapped corpus, its arrays (no pass over the pairs)."""
        pairs = self._pairs(split)
        if isinstance(pairs, BinarizedPairs):
            return pairs.lengths()  # type: ignore[return-value]  # (N,) int64 arrays
        return [len(s) for s, _ in pairs], [len(t) for _, t in pairs]

    def collate(self, split: str, indices: list[int], model: Transformer) -> Batch:
        pairs, cfg = self._pairs(split), model.cfg
        return collate([pairs[i] for i in indices], cfg.pad_id, cfg.bos_id, cfg.eos_id)

    def loss(self, model: Transformer, batch: Batch, label_smoothing: float) -> LossOutput:
        """The label-smoothed loss; in training, with ``train.guided_attention`` on, plus the guided attention loss
        (validation losses stay comparable across runs with and without it)."""
        guided = self.guided if model.training else None
        return sequence_loss(model, batch.src, batch.tgt_in, batch.tgt_out, label_smoothing, guided)

    def extra_validation(self, model: Transformer, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The BLEU of translations of the first ``bleu_samples`` validation sentences."""
        n = min(self.settings.bleu_samples, len(self.data.valid_text))
        if not n:
            return {}
        sample = self.data.valid_text[:n]
        hyps = self.translate(model, [s for s, _ in sample], device, max_tokens)
        return {"bleu": corpus_bleu(hyps, [t for _, t in sample], tokenize=self.settings.bleu_tokenize)["bleu"],
                "bleu_sentences": n}

    def translate(self, model: Transformer, sources: list[str], device: torch.device, max_tokens: int) -> list[str]:
        """How validation translates: greedy search."""
        return Translator(model, self.data.vocabs, device).translate(sources, beam_size=1, max_tokens=max_tokens)
