"""What the Translator shows of the model's attention: every weight of one sentence (:meth:`attention`, drawn by
``tformer plot``), fairseq-style word alignments (``--print-alignment``) and how closely the encoder-decoder
attention followed the source (:meth:`alignment_rates`). :class:`~tformer.translator.core.Translator` inherits
these methods; they use its model(s), tokenizers, batching and decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tformer.console import log
from tformer.errors import TformerError
from tformer.evaluation.alignment import DEFAULT_BAND, AlignmentRates, alignment_rates
from tformer.generation import Feature, GenerationOptions
from tformer.generation.alignment import hard_alignment, output_alignment


class AttentionInspection:
    """The attention-reading methods of :class:`~tformer.translator.core.Translator` (a mixin: ``self`` is a
    Translator, with ``model``, ``members``, ``vocabs``, ``device``, ``capabilities`` and its batching)."""

    def check_alignment_layer(self, layer: int) -> None:
        """A one-line :class:`TformerError` unless the decoder has a layer ``layer`` (negative: from the last)."""
        for model in self.members:
            n = model.cfg.num_decoder_layers
            if not -n <= layer < n:
                raise TformerError(f"alignment layer {layer} is out of range for {n} decoder layers")

    @torch.no_grad()
    def alignment_rates(self, texts: Sequence[str], translations: Sequence[str | Sequence[int]],
                        options: GenerationOptions | None = None, *, band: float = DEFAULT_BAND, layer: int = -1,
                        max_tokens: int = 4096, warn=None) -> AlignmentRates:
        """How closely the encoder-decoder attention followed the source in order while producing
        ``translations`` of ``texts``: the diagonal focus rate and the monotonic rate
        (:mod:`tformer.evaluation.alignment`) of decoder layer ``layer``'s attention (mean over heads).

        ``translations``: each the output ids :meth:`translate_ids` decoded (read as they are), or a text
        (tokenized again, + EOS). Without a monotonic window in ``options`` the weights come from one teacher-forced
        pass (cached decoding equals full recomputation, so they are those decoding saw); under a window the outputs
        are fed step by step, the window moving as it moved in decoding. Empty sentences are left out.
        """
        weights = self._cross_attention(texts, translations, options, "alignment_rates()", layer, max_tokens, warn)
        return alignment_rates(list(weights.values()), band)

    @torch.no_grad()
    def alignments(self, texts: Sequence[str], translations: Sequence[str | Sequence[int]],
                   options: GenerationOptions | None = None, *, layer: int = -1, max_tokens: int = 4096,
                   warn=None) -> list[list[tuple[int, int]]]:
        """Each translation's word alignment as fairseq's ``--print-alignment`` makes it: for every output token
        (EOS left out) the source token (EOS left out) with the most encoder-decoder attention in decoder layer
        ``layer`` (default the last, as fairseq's ``alignment_layer``), mean over its heads (and over the models of
        an ensemble): pairs (source index, target index), 0-based token positions, [] for an empty sentence.

        ``translations`` and ``options`` as for :meth:`alignment_rates`: the weights are those decoding saw.
        """
        weights = self._cross_attention(texts, translations, options, "alignments()", layer, max_tokens, warn)
        eos = self.model.cfg.eos_id
        return [hard_alignment(weights[i], self._output_ids(translations[i]), eos) if i in weights else []
                for i in range(len(texts))]

    def _cross_attention(self, texts: Sequence[str], translations: Sequence[str | Sequence[int]],
                         options: GenerationOptions | None, what: str, layer: int, max_tokens: int,
                         warn) -> dict[int, Tensor]:
        """Sentence index -> the attention while producing its translation (T, S) on the CPU (T its output tokens,
        S its source tokens with EOS), for the non-empty sentences (:func:`output_alignment`)."""
        self.capabilities.require(Feature.ATTENTION_MAPS, what=what)
        if len(texts) != len(translations):
            raise TformerError(f"{what} got {len(texts)} sentences but {len(translations)} translations")
        window = GenerationOptions.of(options).window()
        self.check_alignment_layer(layer)
        cfg = self.model.cfg
        ids = self._encode(texts, warn or log)
        found: dict[int, Tensor] = {}
        for chunk, src in self._batches(ids, max_tokens):
            outs = [self._output_ids(translations[i]) for i in chunk]
            weights = output_alignment(self.members, src, outs, bos_id=cfg.bos_id, pad_id=cfg.pad_id, layer=layer,
                                       window=window)  # (B, T, S)
            found.update({i: weights[row, : len(out), : len(ids[i])].cpu()
                          for row, (i, out) in enumerate(zip(chunk, outs, strict=True))})
        return found

    def _output_ids(self, translation: str | Sequence[int]) -> list[int]:
        """A translation's output ids: decoded ids as they are (at least EOS), or a text tokenized + EOS."""
        cfg = self.model.cfg
        if isinstance(translation, str):
            return self.vocabs.tgt.encode(translation)[: cfg.max_len - 1] + [cfg.eos_id]
        return list(translation)[: cfg.max_len] or [cfg.eos_id]

    @torch.no_grad()
    def attention(self, text: str, target: str | None = None, options: GenerationOptions | None = None, *values,
                  warn=None, **settings) -> SentenceAttention:
        """Every attention weight of the model for one sentence, with the tokens on both axes.

        The model translates ``text`` (or is teacher-forced with ``target`` when given) and runs once more
        with ``need_weights=True`` over the source and BOS + translation, so that the weights are exactly
        those of the forward pass that scores the translation. The translation's settings are those of
        :meth:`translate` (``beam_size=4``, ``length_penalty=0.6``, ...).

        Returns:
            A :class:`SentenceAttention`: source tokens (ending in EOS), decoder input tokens (BOS +
            translation) and output tokens (translation + EOS), and per-layer weights with the batch
            dimension dropped: encoder (H, S, S), decoder_self (H, T, T), decoder_cross (H, T, S).
        """
        self.capabilities.require(Feature.ATTENTION_MAPS, what="attention()")
        opts = self.decoding_options(options, *values, what="attention()", names=("beam_size", "length_penalty"),
                                     **settings)
        if not isinstance(text, str) or not text.strip():
            raise TformerError("attention() needs one non-empty sentence")
        (src_ids,) = self._encode([text], warn or log)
        if src_ids is None:
            raise TformerError("attention() needs a sentence with at least one token")
        cfg = self.model.cfg
        src = torch.tensor([src_ids], device=self.device)  # (1, S)
        if target is None:  # as translate() decodes it (an ensemble's translation; the first model's weights)
            out = self.translate_ids([text], opts, warn=warn)[0]
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
