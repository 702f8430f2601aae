"""Text in, text out: a model, its tokenizers and the decoding engine together.

    >>> translator = Translator.from_pretrained("runs/demo")
    >>> translator.translate(["three hundred twenty-one"], beam_size=4)
    ['dreihunderteinundzwanzig']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from tformer.console import log
from tformer.console import progress as progress_bar
from tformer.data.tokenizer import Vocabularies
from tformer.errors import TformerError
from tformer.models.cmlm.model import CMLM
from tformer.models.transformer.model import Transformer

MODEL_SUBDIR = "model"


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Transformer | CMLM:
    """The encoder-decoder saved in ``model_dir``: a :class:`Transformer` or, when its config.json has the
    length predictor's keys, a non-autoregressive :class:`CMLM`."""
    import json

    from tformer.models.cmlm.config import CMLMConfig, seq2seq_config_class

    try:
        doc = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None  # Transformer.from_pretrained reports the file in one line
    if seq2seq_config_class(doc) is CMLMConfig:
        return CMLM.from_pretrained(model_dir, map_location=map_location)
    return Transformer.from_pretrained(model_dir, map_location=map_location)


class Translator:
    """Translate sentences with a trained :class:`Transformer` (or non-autoregressive :class:`CMLM`) and its
    :class:`Vocabularies`."""

    def __init__(self, model: Transformer | CMLM, vocabs: Vocabularies, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.vocabs = vocabs
        self.device = torch.device(device)

    @property
    def non_autoregressive(self) -> bool:
        """True for a CMLM, which decodes by mask-predict (``iterations``, ``length_candidates``)."""
        return isinstance(self.model, CMLM)

    def _autoregressive_only(self, what: str) -> None:
        if self.non_autoregressive:
            raise TformerError(f"{what} needs an autoregressive model; this one is non-autoregressive (a CMLM)")

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

        return Translator(quantize_dynamic_int8(self.model), self.vocabs, "cpu")

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
        beam_size: int | None = None,
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
        iterations: int | None = None,
        length_candidates: int | None = None,
        progress: bool = False,
        warn=None,
    ) -> list[str]:
        """Translate ``texts``, batched by length under ``max_tokens`` padded source tokens.

        Empty sentences translate to empty strings; over-long ones are truncated with a warning.

        Args:
            beam_size: 1 = greedy, more = beam search; None = 4 (§6.1). Autoregressive models only.
            max_len: most output tokens per sentence; None = each sentence's own source length + 50 (§6.1), or
                for a CMLM its length predictor's limit.
            do_sample, temperature, top_k, top_p, seed: sample instead of searching (see ``generate``).
            iterations, length_candidates: a CMLM's mask-predict rounds (default 10) and lengths (default 3).
            progress: show a progress bar (stderr).
            warn: where warnings go (default: stderr).
        """
        if self.non_autoregressive:
            if beam_size not in (None, 1) or do_sample or min_len:
                raise TformerError("a non-autoregressive model (CMLM) decodes by mask-predict: give iterations "
                                   "and length_candidates, not beam_size, sampling or min_len")
            generate = dict(iterations=10 if iterations is None else iterations,
                            length_candidates=3 if length_candidates is None else length_candidates, max_len=max_len)
        else:
            if iterations is not None or length_candidates is not None:
                raise TformerError("iterations and length_candidates are for a non-autoregressive model (CMLM)")
            generate = dict(beam_size=4 if beam_size is None else beam_size, max_len=max_len, min_len=min_len,
                            length_penalty=length_penalty, do_sample=do_sample, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed)
        ids = self._encode(texts, warn or log)
        out = [""] * len(ids)
        batches = list(self._batches(ids, max_tokens))
        for chunk, src in progress_bar(batches, enabled=progress, unit="batch"):
            hyps = self.model.generate(src, **generate)
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
        self._autoregressive_only("translate_nbest")
        ids = self._encode(texts, warn or log)
        out: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in ids]
        for chunk, src in progress_bar(list(self._batches(ids, max_tokens)), enabled=progress, unit="batch"):
            hyps = self.model.generate_nbest(src, beam_size=beam_size, nbest=nbest, max_len=max_len, min_len=min_len,
                                             length_penalty=length_penalty)
            for row, i in enumerate(chunk):
                out[i] = [(self.vocabs.tgt.decode(list(h.tokens)), h.score) for h in hyps[row]]
        return out


    @torch.no_grad()
    def attention(self, text: str, target: str | None = None, beam_size: int = 4, length_penalty: float = 0.6,
                  warn=None) -> SentenceAttention:
        """Every attention weight of the model for one sentence, with the tokens on both axes.

        The model translates ``text`` (or is teacher-forced with ``target`` when given) and runs once more
        with ``need_weights=True`` over the source and BOS + translation, so that the weights are exactly
        those of the forward pass that scores the translation.

        Returns:
            A :class:`SentenceAttention`: source tokens (ending in EOS), decoder input tokens (BOS +
            translation) and output tokens (translation + EOS), and per-layer weights with the batch
            dimension dropped: encoder (H, S, S), decoder_self (H, T, T), decoder_cross (H, T, S).
        """
        self._autoregressive_only("attention()")
        if not isinstance(text, str) or not text.strip():
            raise TformerError("attention() needs one non-empty sentence")
        (src_ids,) = self._encode([text], warn or log)
        if src_ids is None:
            raise TformerError("attention() needs a sentence with at least one token")
        cfg = self.model.cfg
        src = torch.tensor([src_ids], device=self.device)  # (1, S)
        if target is None:
            out = self.model.generate(src, beam_size=beam_size, length_penalty=length_penalty)[0].tolist()
            out = [t for t in out if t != cfg.pad_id]
        else:
            out = self.vocabs.tgt.encode(target)[: cfg.max_len - 1] + [cfg.eos_id]
        out = out or [cfg.eos_id]  # without EOS within the length limit, what was produced is shown
        tgt_in = torch.tensor([[cfg.bos_id] + out[:-1]], device=self.device)  # (1, T): BOS + y_<t
        _, maps = self.model(src, tgt_in, need_weights=True)
        src_tok = self.vocabs.src
        tgt_tok = self.vocabs.tgt
        return SentenceAttention(
            source=text,
            translation=tgt_tok.decode(out),
            source_tokens=[src_tok.id_to_token(i) for i in src_ids],
            target_input_tokens=[tgt_tok.id_to_token(i) for i in tgt_in[0].tolist()],
            target_output_tokens=[tgt_tok.id_to_token(i) for i in out],
            encoder=[w[0].float().cpu() for w in maps.encoder],
            decoder_self=[w[0].float().cpu() for w in maps.decoder_self],
            decoder_cross=[w[0].float().cpu() for w in maps.decoder_cross],
        )


@dataclass
class SentenceAttention:
    """One sentence's attention weights (see :meth:`Translator.attention`).

    Decoder row t is the query of decoder input token t (``target_input_tokens[t]``), the position that
    predicts ``target_output_tokens[t]``.
    """

    source: str
    translation: str
    source_tokens: list[str]  # S, ending in EOS
    target_input_tokens: list[str]  # T: BOS + translation
    target_output_tokens: list[str]  # T: translation + EOS
    encoder: list[Tensor] = field(default_factory=list)  # per layer (H, S, S)
    decoder_self: list[Tensor] = field(default_factory=list)  # per layer (H, T, T)
    decoder_cross: list[Tensor] = field(default_factory=list)  # per layer (H, T, S)
