"""A trained ``task: lm`` run (:mod:`tformer.tasks.lm`): prompts in, continuations out, by greedy search, beam
search or sampling (:meth:`tformer.models.gpt.model.DecoderOnly.generate`). ``tformer generate``, ``tformer serve``
and Python share this one path.

    >>> p = open_run("runs/lm")
    >>> p.predict(["three hundred"], beam_size=4)
    [{'prompt': 'three hundred', 'continuation': ' twenty-one', 'tokens': 3, 'score': -0.41}]

A prompt is read as the training text was: ``<s>`` then the run's tokenizer's ids. Prompts are batched by length
under a budget of padded tokens (as ``tformer translate`` batches sentences) and padded with the attention mask, so
that a searched continuation (greedy or beam) does not depend on the other prompts; a sample repeats for the same
seed and the same batch. The continuation is the text the new tokens add to the prompt (its leading space when
they start a new word), EOS not included; ``tokens`` counts those new tokens.

Shape legend: B prompts, P tokens (padded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError
from tformer.generation import GenerationOptions, Hypothesis
from tformer.models.gpt.model import DecoderOnly
from tformer.tasks.classifier_runs import check_device, input_error, run_model, token_batches
from tformer.tasks.lm import LanguageModelTask, example_prompt
from tformer.tasks.predictor import Predictor, first_validation_line, register_predictor

TOKENIZER_FILE = "tokenizer.json"


@register_predictor
class LanguageModelPredictor(Predictor):
    """The decoder-only model of an ``lm`` run and its tokenizer."""

    task = LanguageModelTask.name
    endpoint = "generate"
    input_kind = "text"
    decodes = True

    def __init__(self, model: DecoderOnly, tokenizer: Tokenizer, run_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model, self.tokenizer, self.run_dir = model.to(self.device).eval(), tokenizer, run_dir

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LanguageModelPredictor:
        d = check_device(device)
        model = run_model(run_dir, d, (DecoderOnly,), LanguageModelTask.name)
        return cls(model, Tokenizer.load(Path(run_dir) / TOKENIZER_FILE), run_dir, d)

    # -- inputs --
    def encode(self, prompts: Sequence[Any]) -> list[list[int]]:
        """``<s>`` + the ids of each prompt; an empty prompt, one that is not a string or one longer than the model's
        positions is a one-line error naming it (``input N``, counted from 1)."""
        if isinstance(prompts, str):
            raise TformerError("predict() takes a list of prompts, not one string")
        for n, text in enumerate(prompts, start=1):
            if not isinstance(text, str):
                raise input_error(n, f"expected a text prompt, got {type(text).__name__}")
            if not text.strip():
                raise input_error(n, "empty prompt")
        ids = [[self.model.cfg.bos_id, *x] for x in self.tokenizer.encode_batch(list(prompts))]
        for n, x in enumerate(ids, start=1):
            if len(x) > self.model.cfg.max_len:
                raise input_error(n, f"the prompt has {len(x) - 1} tokens; the model reads at most "
                                     f"{self.model.cfg.max_len - 1}")
        return ids

    def padded(self, ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-padded prompts (B, P) and their attention mask (B, P) (True = a real token), on the device."""
        cfg = self.model.cfg
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), cfg.eos_id if cfg.pad_id is None else cfg.pad_id)  # (B, P)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)  # (B, P)
        for b, x in enumerate(ids):
            batch[b, : len(x)], mask[b, : len(x)] = torch.tensor(x), True
        return batch.to(self.device), mask.to(self.device)

    # -- answers --
    def decoding_options(self, options: GenerationOptions | None = None, **settings: Any) -> GenerationOptions:
        """The settings (fields of :class:`GenerationOptions` by name; ``max_len`` = the most new tokens, default
        32) as options, refused in one line when bad or not supported by the model."""
        try:
            opts = GenerationOptions.of(options, **settings)
        except TypeError as e:  # an unknown setting: one line, as any bad input
            raise TformerError(str(e)) from None
        self.model.capabilities.check(opts, "generate")
        return opts

    @torch.no_grad()
    def predict(self, inputs: Sequence[str], options: GenerationOptions | None = None, *, max_tokens: int = 4096,
                **settings: Any) -> list[dict[str, Any]]:
        """``{"prompt", "continuation", "tokens"}`` per prompt, in order, and ``"score"`` (log P(continuation |
        prompt) / lp) under beam search (``beam_size`` > 1), with ``"nbest"`` (each ``{"continuation", "tokens",
        "score"}``, best first) when ``nbest`` is given. Decoding settings: :meth:`decoding_options` (default greedy
        search, 32 new tokens). Batches hold at most ``max_tokens`` padded prompt tokens (a longer prompt alone)."""
        opts = self.decoding_options(options, **settings)
        ids = self.encode(inputs)
        out: list[dict[str, Any]] = [{} for _ in ids]
        for batch in token_batches([len(x) for x in ids], max_tokens):
            prompts, mask = self.padded([ids[i] for i in batch])
            if opts.beam_size not in (None, 1):
                nbest = self.model.generate_nbest(prompts, opts.with_defaults(nbest=1), attention_mask=mask)
                for i, hyps in zip(batch, nbest, strict=True):
                    out[i] = self._answer(inputs[i], ids[i], hyps[0].tokens, hyps, opts.nbest is not None)
            else:
                for i, row in zip(batch, self.model.generate(prompts, opts, attention_mask=mask).tolist(), strict=True):
                    out[i] = self._answer(inputs[i], ids[i], row, None, False)
        return out

    def continuation(self, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> tuple[str, int]:
        """The text that ``new_ids`` add after the prompt (up to EOS; with its leading space when they start a
        new word) and how many tokens that is."""
        cfg = self.model.cfg
        new = list(new_ids)
        new = new[: new.index(cfg.eos_id)] if cfg.eos_id in new else new
        if cfg.pad_id is not None:
            new = [t for t in new if t != cfg.pad_id]
        prompt = list(prompt_ids)
        if prompt[:1] == [cfg.bos_id]:  # the BOS encode() adds is no text (GPT-2's is its EOS too: decoding stops)
            prompt = prompt[1:]
        before = self.tokenizer.decode(prompt)
        after = self.tokenizer.decode(prompt + new)
        return (after[len(before):] if after.startswith(before) else self.tokenizer.decode(new)), len(new)

    def _answer(self, prompt: str, prompt_ids: list[int], new_ids: Sequence[int], hyps: list[Hypothesis] | None,
                with_nbest: bool) -> dict[str, Any]:
        text, n = self.continuation(prompt_ids, new_ids)
        answer: dict[str, Any] = {"prompt": prompt, "continuation": text, "tokens": n}
        if hyps is not None:
            answer["score"] = hyps[0].score
        if with_nbest:
            answer["nbest"] = [dict(zip(("continuation", "tokens"), self.continuation(prompt_ids, h.tokens),
                                        strict=True), score=h.score) for h in hyps]
        return answer

    def example(self) -> str | None:
        """The prompt the run's validation continues: the first three words of its first validation sentence
        (``data.valid_src``), or None when the run names none or the file is gone."""
        first = None if self.run_dir is None else first_validation_line(self.run_dir)
        return None if first is None else example_prompt(first)

    def info(self) -> dict[str, Any]:
        """The model's positions and vocabulary (what bounds a prompt and a continuation)."""
        cfg = self.model.cfg
        return {"max_len": cfg.max_len, "vocab_size": cfg.vocab_size, "layers": cfg.num_layers,
                "d_model": cfg.d_model}
