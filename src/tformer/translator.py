"""Text in, text out: a model, its tokenizers and the decoding engine together.

    >>> translator = Translator.from_pretrained("runs/demo")
    >>> translator.translate(["three hundred twenty-one"], beam_size=4)
    ['dreihunderteinundzwanzig']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from tformer.console import log
from tformer.console import progress as progress_bar
from tformer.data.tokenizer import Vocabularies
from tformer.errors import TformerError
from tformer.model.transformer import Transformer

MODEL_SUBDIR = "model"


class Translator:
    """Translate sentences with a trained :class:`Transformer` and its :class:`Vocabularies`."""

    def __init__(self, model: Transformer, vocabs: Vocabularies, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.vocabs = vocabs
        self.device = torch.device(device)

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
        return cls(Transformer.from_pretrained(model_dir, map_location=device), Vocabularies.load(d), device)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model (``directory/model``) and tokenizer files so that :meth:`from_pretrained` reads them."""
        d = Path(directory)
        self.model.save_pretrained(d / MODEL_SUBDIR)
        self.vocabs.save(d)

    def _encode(self, texts: Sequence[str], warn) -> list[list[int] | None]:
        """Source ids + EOS per sentence (None for an empty one), cut to the model's maximum length."""
        if isinstance(texts, str):
            raise TformerError("translate() takes a list of sentences, not one string")
        cfg = self.model.cfg
        out: list[list[int] | None] = []
        for n, ids in enumerate(self.vocabs.src.encode_batch(list(texts)), start=1):
            if not ids:
                out.append(None)
                continue
            if len(ids) + 1 > cfg.max_len:
                warn(f"warning: sentence {n} has {len(ids)} tokens; truncated to the model's maximum of "
                     f"{cfg.max_len - 1}")
                ids = ids[: cfg.max_len - 1]
            out.append(ids + [cfg.eos_id])
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
    def translate(
        self,
        texts: Sequence[str],
        beam_size: int = 4,
        max_len: int | None = None,
        min_len: int = 0,
        length_penalty: float = 0.6,
        max_tokens: int = 4096,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
        warn=None,
    ) -> list[str]:
        """Translate ``texts``, batched by length under ``max_tokens`` padded source tokens.

        Empty sentences translate to empty strings; over-long ones are truncated with a warning.

        Args:
            max_len: most output tokens per sentence; None = the batch's source length + 50 (§6.1).
            do_sample, temperature, top_k, top_p, seed: sample instead of searching (see ``generate``).
            progress: show a progress bar (stderr).
            warn: where warnings go (default: stderr).
        """
        ids = self._encode(texts, warn or log)
        out = [""] * len(ids)
        batches = list(self._batches(ids, max_tokens))
        for chunk, src in progress_bar(batches, enabled=progress, unit="batch"):
            hyps = self.model.generate(
                src, beam_size=beam_size, max_len=max_len, min_len=min_len, length_penalty=length_penalty,
                do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
            )
            for row, i in enumerate(chunk):
                out[i] = self.vocabs.tgt.decode(hyps[row].tolist())
        return out

    @torch.no_grad()
    def translate_nbest(
        self,
        texts: Sequence[str],
        beam_size: int = 4,
        nbest: int = 4,
        max_len: int | None = None,
        min_len: int = 0,
        length_penalty: float = 0.6,
        max_tokens: int = 4096,
        *,
        progress: bool = False,
        warn=None,
    ) -> list[list[tuple[str, float]]]:
        """The ``nbest`` best translations of each sentence with their scores (log-probability / lp), best first.

        An empty sentence gets ``[("", 0.0)]``.
        """
        ids = self._encode(texts, warn or log)
        out: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in ids]
        for chunk, src in progress_bar(list(self._batches(ids, max_tokens)), enabled=progress, unit="batch"):
            hyps = self.model.generate_nbest(src, beam_size=beam_size, nbest=nbest, max_len=max_len, min_len=min_len,
                                             length_penalty=length_penalty)
            for row, i in enumerate(chunk):
                out[i] = [(self.vocabs.tgt.decode(list(h.tokens)), h.score) for h in hyps[row]]
        return out


