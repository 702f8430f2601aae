"""Language modelling: the decoder-only model (GPT-style) trained on text, one sentence a line.

Data: ``data.train_src`` (and ``data.valid_src``), plain text (``.gz`` read transparently), one
sequence a line; a BPE or unigram tokenizer of ``data.vocab_size`` is trained on the training text.
Each line becomes ``<s> ids </s>``; the model reads all but the last token and predicts all but the
first (teacher forcing). Loss: label-smoothed cross-entropy over predicted tokens (``train.label_smoothing``;
0 for a plain language model), the output layer fused into the loss. Validation: loss and perplexity
(exp of the mean negative log-likelihood per predicted token, ``</s>`` included), and a greedy
continuation of the first validation sentence's first three words, to read along. At the end of the
run the best model's perplexity on ``data.test_src`` (when given) is computed once (``test_ppl``).

``model`` holds :class:`tformer.models.gpt.model.DecoderOnlyConfig` fields, on top of the
``tiny`` preset or ``preset: gpt2`` shapes; the vocabulary and special ids come from the tokenizer.

A trained run (``tokenizer.json``, the best model in ``model/``) continues prompts through its predictor,
:class:`tformer.tasks.lm_run.LanguageModelPredictor` (``tformer generate``, ``tformer serve``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.config import check, from_dict
from tformer.console import log
from tformer.data.corpus import read_lines
from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig
from tformer.tasks.base import Task
from tformer.tasks.registry import register
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput, linear_label_smoothed_loss

PROMPT_WORDS = 3  # validation continues the first validation sentence's first words (and so does a run's example)


def example_prompt(sentence: str) -> str:
    """The prompt validation continues: the first :data:`PROMPT_WORDS` words of ``sentence``."""
    return " ".join(sentence.split()[:PROMPT_WORDS])


PRESETS = {
    "tiny": {"d_model": 32, "num_heads": 4, "d_ff": 64, "num_layers": 2, "max_len": 128},
    "small": {"d_model": 256, "num_heads": 4, "d_ff": 1024, "num_layers": 4, "max_len": 128},
    "gpt2": {"d_model": 768, "num_heads": 12, "d_ff": 3072, "num_layers": 12, "max_len": 1024},
}


def model_config(cfg: RunConfig, vocab_size: int, **ids: int) -> DecoderOnlyConfig:
    """The run's :class:`DecoderOnlyConfig` for a vocabulary (and special ids)."""
    spec = dict(cfg.model)
    preset = spec.pop("preset", "small")
    check(preset in PRESETS, f"model.preset must be one of {tuple(PRESETS)} for task lm, got {preset!r}")
    fixed = {"vocab_size", "pad_id", "bos_id", "eos_id"}
    check(not fixed & set(spec), f"model: {', '.join(sorted(fixed & set(spec)))} come(s) from the tokenizer")
    return from_dict(DecoderOnlyConfig, {"vocab_size": vocab_size, **PRESETS[preset], **spec, **ids}, where="model")


@dataclass(frozen=True)
class LMBatch:
    """Sequences of one batch: the model reads ``inputs`` and predicts ``targets`` (both (B, T), right-padded)."""

    inputs: Tensor  # (B, T) <s> + ids
    targets: Tensor  # (B, T) ids + </s>
    num_src_tokens: int  # 0: nothing is read besides what is predicted
    num_tgt_tokens: int  # predicted tokens

    def to(self, device, non_blocking: bool = False) -> LMBatch:
        return LMBatch(self.inputs.to(device, non_blocking=non_blocking),
                       self.targets.to(device, non_blocking=non_blocking), self.num_src_tokens, self.num_tgt_tokens)


@register
class LanguageModelTask(Task):
    """Text -> :class:`DecoderOnly` (see the module docstring)."""

    name = "lm"
    unit = "sentences"

    def __init__(self, tokenizer: Tokenizer, train: list[list[int]], valid: list[list[int]],
                 valid_text: list[str] | None = None, test: list[list[int]] | None = None) -> None:
        self.tokenizer, self.valid_text = tokenizer, valid_text or []
        self.sequences = {"train": train, "valid": valid, "test": test or []}

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        m = model_config(cfg, 64)
        check(cfg.data.max_len + 1 <= m.max_len, f"data.max_len ({cfg.data.max_len}) + 1 for <s> exceeds "
              f"model.max_len ({m.max_len}): lower data.max_len or raise model.max_len")
        check(bool(cfg.data.train_src), "task lm needs data.train_src (text, one sequence a line)")

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return model_config(cfg, 64).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[LanguageModelTask, DecoderOnly]:
        d = cfg.data
        tokenizer, train_text, valid_text = _tokenizer_and_text(cfg, run_dir, resume)
        train = [s for s in tokenizer.encode_batch(train_text) if 0 < len(s) <= d.max_len]
        valid_keep = [(t, s) for t, s in zip(valid_text, tokenizer.encode_batch(valid_text), strict=True)
                      if 0 < len(s) <= d.max_len]
        log(f"train: kept {len(train)} of {len(train_text)} sentences (at most data.max_len={d.max_len} tokens)"
            + (f"; valid: kept {len(valid_keep)} of {len(valid_text)}" if valid_text else ""))
        if not train:
            raise TformerError("every training sentence was filtered out (check data.max_len and the file)")
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            tokenizer.save(run_dir / "tokenizer.json")
        m = model_config(cfg, tokenizer.vocab_size, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                         eos_id=tokenizer.eos_id)
        test_text = [line for line in read_lines(d.path("test_src")) if line] if d.test_src else []
        test = [s[: m.max_len - 1] for s in tokenizer.encode_batch(test_text) if s]  # every test sentence counts
        task = cls(tokenizer, train, [s for _, s in valid_keep], [t for t, _ in valid_keep], test)
        return task, DecoderOnly(m)

    # -- training --

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        seqs = self.sequences[split]
        return [0] * len(seqs), [len(s) for s in seqs]  # the sampler's +1 is the <s> or </s>

    def collate(self, split: str, indices: list[int], model: DecoderOnly) -> LMBatch:
        seqs = [self.sequences[split][i] for i in indices]
        cfg = model.cfg
        pad = cfg.pad_id if cfg.pad_id is not None else cfg.eos_id
        t = max(len(s) for s in seqs) + 1
        inputs = torch.full((len(seqs), t), pad, dtype=torch.long)  # (B, T)
        targets = torch.full((len(seqs), t), pad, dtype=torch.long)  # (B, T)
        for b, s in enumerate(seqs):
            inputs[b, : len(s) + 1] = torch.tensor([cfg.bos_id, *s])
            targets[b, : len(s) + 1] = torch.tensor([*s, cfg.eos_id])
        return LMBatch(inputs, targets, 0, sum(len(s) + 1 for s in seqs))

    def loss(self, model: DecoderOnly, batch: LMBatch, label_smoothing: float) -> LossOutput:
        # Right padding needs no mask (a causal model never looks ahead); padded targets are ignored.
        proj = model.output_projection
        return linear_label_smoothed_loss(model.hidden_states(batch.inputs), proj.weight, proj.bias, batch.targets,
                                          label_smoothing, model.cfg.pad_id)

    @torch.no_grad()
    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's perplexity on the test text (``data.test_src``), once, at the end of the run."""
        if not self.sequences["test"]:
            return {}
        from tformer.data.batching import TokenBatchSampler

        best = DecoderOnly.from_pretrained(run_dir / "model", map_location=device).eval()
        nll = tokens = 0
        for idx in TokenBatchSampler(*self.lengths("test"), max_tokens, shuffle=False).batches_for_epoch(0):
            out = self.loss(best, self.collate("test", idx, best).to(device), 0.0)
            nll, tokens = nll + float(out.nll), tokens + out.num_tokens
        return {"test_ppl": math.exp(nll / tokens), "test_sentences": len(self.sequences["test"])}

    def extra_validation(self, model: DecoderOnly, device: torch.device, max_tokens: int) -> dict[str, Any]:
        if not self.valid_text:
            return {}
        prompt = example_prompt(self.valid_text[0])
        ids = torch.tensor([[model.cfg.bos_id, *self.tokenizer.encode(prompt)]], device=device)
        out = model.generate(ids, max_new_tokens=24)[0].tolist()
        return {"sample": f"{prompt} ... {self.tokenizer.decode(out)}"}


def _tokenizer_and_text(cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[Tokenizer, list[str], list[str]]:
    """The tokenizer (trained on the training text, or loaded when resuming), the training and validation text."""
    d = cfg.data
    train_text = [line for line in read_lines(d.path("train_src")) if line]
    if not train_text:
        raise TformerError(f"no text in {d.path('train_src')}")
    valid_text = [line for line in read_lines(d.path("valid_src")) if line] if d.valid_src else []
    if resume:
        tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    else:
        t0 = time.perf_counter()
        tokenizer = Tokenizer.train(train_text, vocab_size=d.vocab_size, model=d.tokenizer)
        log(f"tokenizer: {d.tokenizer}, vocabulary {tokenizer.vocab_size} ({time.perf_counter() - t0:.1f}s)")
    return tokenizer, train_text, valid_text
