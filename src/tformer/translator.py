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
            raise TformerError(f"run directory not found: {d}")
        model_dir = d / MODEL_SUBDIR if (d / MODEL_SUBDIR).is_dir() else d
        if not (model_dir / "model.safetensors").is_file():
            raise TformerError(f"no trained model in {d} (expected {d / MODEL_SUBDIR / 'model.safetensors'})")
        return cls(Transformer.from_pretrained(model_dir, map_location=device), Vocabularies.load(d), device)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model (``directory/model``) and tokenizer files so that :meth:`from_pretrained` reads them."""
        d = Path(directory)
        self.model.save_pretrained(d / MODEL_SUBDIR)
        self.vocabs.save(d)

    @torch.no_grad()
    def translate(
        self,
        texts: Sequence[str],
        beam_size: int = 4,
        max_len: int | None = None,
        min_len: int = 0,
        length_penalty: float = 0.6,
        max_tokens: int = 4096,
    ) -> list[str]:
        """Translate ``texts``; sentences are batched by length under a budget of ``max_tokens`` source tokens.

        Args:
            max_len: most output tokens per sentence; None = that sentence's length + 50 (§6.1).
        """
        if isinstance(texts, str):
            raise TformerError("translate() takes a list of sentences, not one string")
        cfg = self.model.cfg
        ids = [s + [cfg.eos_id] for s in self.vocabs.src.encode_batch(list(texts))]
        limit = cfg.max_len
        ids = [s[: limit - 1] + [cfg.eos_id] if len(s) > limit else s for s in ids]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[str] = [""] * len(ids)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= max_tokens:
                end += 1
            chunk = order[start:end]
            width = len(ids[chunk[-1]])
            src = torch.full((len(chunk), width), cfg.pad_id, dtype=torch.long)  # (B, S)
            for row, i in enumerate(chunk):
                src[row, : len(ids[i])] = torch.tensor(ids[i])
            n = max_len if max_len is not None else width + 50
            hyps = self.model.generate(src.to(self.device), beam_size=beam_size, max_len=n, min_len=min_len,
                                       length_penalty=length_penalty)
            for row, i in enumerate(chunk):
                out[i] = self.vocabs.tgt.decode(hyps[row].tolist())
            start = end
        return out
