"""Speech recognition with the paper's Transformer decoder over the Conformer encoder's frames, with an optional
CTC head trained jointly (the CTC-only model is :mod:`.ctc`).

    ConformerSeq2Seq   features (B, T, M) -> ConformerEncoder -> memory (B, T', D) -> the Transformer decoder
                       (:mod:`.decoder`) -> logits (B, L, V) per target position, trained with (label-smoothed)
                       cross-entropy and, with ``ctc_weight`` = lambda > 0, jointly with CTC on the encoder
                       (Watanabe et al., 2017, "Hybrid CTC/Attention Architecture"):
                           L = lambda L_ctc + (1 - lambda) L_attention,
                       decoded by tformer.generation's greedy and beam search over the KV cache, optionally under
                       a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`, in encoder frames).

Lengths travel with the features: the encoder's output lengths mask the padded frames out of the CTC loss, the
decodings and the decoder's cross-attention, so an utterance's outputs do not depend on its batch. The decoding
engines take a source tensor ``src``; :class:`SpeechBatch` is one batch of utterances in that form (``src`` is
the (B, 1) column of row numbers: ``encode(src)`` encodes those rows), so the engines run unchanged.

The model saves and loads as the other families (:class:`~tformer.io.pretrained.Pretrained`): ``config.json``
holds the :class:`ConformerConfig` and an "asr" section (:class:`Seq2SeqConfig`).

Shape legend: B batch, T input frames, M mel channels, T' encoder frames, D d_model, L target length,
V vocabulary (the blank included), H heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import Config, CrossAttentionConfig, check, check_choice, check_cross_attention
from tformer.data.audio import frame_mask
from tformer.generation import Capabilities, Feature, Hypothesis, beam_search_nbest, greedy_search
from tformer.io.pretrained import Pretrained
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.ctc import at_least_float32, check_no_classes, ctc_loss, log_softmax_float32
from tformer.models.conformer.decoder import SpeechDecoder
from tformer.models.conformer.model import ConformerEncoder
from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import DecoderCache, MonotonicWindow
from tformer.nn.linear import Linear
from tformer.nn.modes import eval_mode

__all__ = ["ASRLoss", "ConformerSeq2Seq", "Seq2SeqConfig", "SpeechBatch"]


# ---- configuration (the "asr" section of config.json) -------------------------------------------------
@dataclass(frozen=True)
class Seq2SeqConfig(Config):
    """The decoder and output settings of :class:`ConformerSeq2Seq` (its ``cfg`` for the decoding engines).

    Attributes:
        vocab_size: V, the output vocabulary (with pad, BOS, EOS, and the blank when there is a CTC head).
        decoder_layers: N decoder layers (§3.1).
        pad_id, bos_id, eos_id: padding (never predicted), the decoder's first input, the end of a transcript.
        ctc_weight: lambda of the joint loss, in [0, 1); 0 = no CTC head.
        blank_id: the CTC head's blank (read only when ``ctc_weight`` > 0).
        decoder_d_ff: the decoder FFN's inner width (None = the encoder's d_ff).
        decoder_norm: "pre" (x + Sublayer(LayerNorm(x)), final LayerNorm; as ESPnet's decoder) or "post" (§3.1).
        max_target_len: decoder positions: BOS and the most tokens fed back (the longest transcript + EOS).
        cross_attention: the decoder's attention over the encoder frames (:class:`CrossAttentionConfig`: the
            paper's dot product, location-aware or monotonic); config.json records it only when it is not dot.
    """

    saved_only_if_set: ClassVar[tuple[str, ...]] = ("cross_attention",)  # added after folders were written

    vocab_size: int
    decoder_layers: int = 6
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    ctc_weight: float = 0.0
    blank_id: int = 0
    decoder_d_ff: int | None = None
    decoder_norm: str = "pre"
    max_target_len: int = 512
    cross_attention: CrossAttentionConfig = CrossAttentionConfig()

    def __post_init__(self) -> None:
        check_cross_attention(self)
        self.check_positive("vocab_size", "decoder_layers", "max_target_len")
        self.check_positive("decoder_d_ff", nullable=True)
        for name in ("pad_id", "bos_id", "eos_id", "blank_id"):
            value = getattr(self, name)
            check(0 <= value < self.vocab_size, f"{name} must be in [0, {self.vocab_size}), got {value}")
        for name in ("bos_id", "eos_id"):
            check(getattr(self, name) != self.pad_id, f"{name} must differ from pad_id ({self.pad_id})")
        check(0.0 <= self.ctc_weight < 1.0, f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        check_choice("decoder_norm", self.decoder_norm, ("pre", "post"))


# ---- attention (the encoder-decoder) ----------------------------------------------------------------------
class ASRLoss(NamedTuple):
    """The terms of :meth:`ConformerSeq2Seq.loss_terms`.

    Attributes:
        loss: what is minimised: (1 - lambda) ``attention`` + lambda ``ctc`` (``attention`` when no CTC head).
        attention: the (label-smoothed) cross-entropy per real target token.
        nll: the summed negative log-likelihood of the gold tokens, detached (for perplexity).
        ctc: :func:`ctc_loss` of the transcripts (targets without EOS), or None.
        num_tokens: real (non-pad) target tokens, EOS included.
        cross_weights: the cross-attention weights (B, H', L, T') of the probed layers and heads, in layer order,
            when :meth:`ConformerSeq2Seq.loss_terms` was given a probe (the guided attention loss); else empty.
        frame_lengths: the encoder's lengths (B,): the real frames of ``cross_weights``' last axis.
    """

    loss: Tensor
    attention: Tensor
    nll: Tensor
    ctc: Tensor | None
    num_tokens: int
    cross_weights: list[Tensor] | tuple = ()
    frame_lengths: Tensor | None = None


class ConformerSeq2Seq(Pretrained, nn.Module):
    """The Conformer encoder and the paper's Transformer decoder (tied output layer), with an optional CTC head.

    Args:
        cfg: the encoder (``num_classes`` 0). The decoder has its d_model, heads, dropouts and LayerNorm epsilon.
        vocab_size, decoder_layers, pad_id, bos_id, eos_id, ctc_weight, blank_id, decoder_d_ff, decoder_norm,
        max_target_len, cross_attention: :class:`Seq2SeqConfig`, kept as ``decoder_cfg`` (the decoding engines read
        its ids).
    """

    config_class = ConformerConfig
    sections = {"asr": Seq2SeqConfig}
    capabilities = Capabilities("a speech encoder-decoder (Conformer + Transformer decoder)", (
        Feature.GREEDY, Feature.BEAM, Feature.NBEST, Feature.ATTENTION_MAPS, Feature.MONOTONIC_WINDOW))

    def __init__(self, cfg: ConformerConfig, vocab_size: int, *, decoder_layers: int = 6, pad_id: int = 0,
                 bos_id: int = 1, eos_id: int = 2, ctc_weight: float = 0.0, blank_id: int = 0,
                 decoder_d_ff: int | None = None, decoder_norm: str = "pre", max_target_len: int = 512,
                 cross_attention: CrossAttentionConfig | None = None) -> None:
        super().__init__()
        check_no_classes(cfg, "ConformerSeq2Seq")
        self.cfg = cfg
        dec = self.decoder_cfg = Seq2SeqConfig(vocab_size, decoder_layers, pad_id, bos_id, eos_id, ctc_weight,
                                               blank_id, decoder_d_ff, decoder_norm, max_target_len,
                                               cross_attention or CrossAttentionConfig())
        self.encoder = ConformerEncoder(cfg)
        self.decoder = SpeechDecoder(vocab_size, cfg.d_model, cfg.num_heads, dec.decoder_d_ff or cfg.d_ff,
                                     decoder_layers, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                                     pre_norm=decoder_norm == "pre", max_len=max_target_len, eps=cfg.layer_norm_eps,
                                     cross_attention=dec.cross_attention)
        self.ctc_head = Linear(cfg.d_model, vocab_size) if ctc_weight > 0 else None

    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"asr": self.decoder_cfg.saved_dict()}

    @classmethod
    def from_config(cls, cfg: ConformerConfig, sections: dict[str, Any]) -> ConformerSeq2Seq:
        dec = sections["asr"]
        return cls(cfg, **{f.name: getattr(dec, f.name) for f in dataclasses.fields(dec)})

    # ---- encoding and teacher forcing ----------------------------------------------------------
    def encode_audio(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """features (B, T, M), lengths (B,) -> memory (B, T', D) and the encoder's lengths (B,)."""
        return self.encoder(features, lengths)

    @staticmethod
    def memory_mask(frame_lengths: Tensor, frames: int) -> Tensor:
        """(B, 1, 1, T') True = a real encoder frame: what cross-attention may attend to."""
        return frame_mask(frame_lengths, frames)[:, None, None, :]

    def decode(self, tgt_in: Tensor, memory: Tensor, frame_lengths: Tensor) -> Tensor:
        """Logits (B, L, V) of decoder inputs tgt_in (B, L) (BOS, y_1 .. y_{L-1}) given encoded frames."""
        return self._decode(tgt_in, memory, frame_lengths)[0]

    def _decode(self, tgt_in: Tensor, memory: Tensor, frame_lengths: Tensor, probe: AttentionProbe | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, L, V) and the probed cross-attention weights (B, H', L, T') per probed layer."""
        out = self.decoder(tgt_in, memory, self.memory_mask(frame_lengths, memory.shape[1]), probe=probe)
        return F.linear(out.hidden, self.decoder.weight), out.probed  # (B, L, D) -> (B, L, V), tied (§3.4)

    def forward(self, features: Tensor, lengths: Tensor | None, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, L, V): position t predicts target token t from tgt_in[:, :t+1]."""
        return self.decode(tgt_in, *self.encode_audio(features, lengths))

    def decoder_states(self, features: Tensor, lengths: Tensor | None, tgt_in: Tensor, *,
                       cross_attention: AttentionProbe | None = None) -> Tensor | tuple[Tensor, list[Tensor]]:
        """The decoder's output (B, L, D) before the pre-softmax map ``decoder.weight`` (V, D), for losses that fuse
        the two (:func:`tformer.training.label_smoothing.linear_label_smoothed_loss`); with ``cross_attention`` also
        the cross-attention weights it names, (B, H', L, T') per probed layer, from beside the fast path."""
        memory, frame_lengths = self.encode_audio(features, lengths)
        out = self.decoder(tgt_in, memory, self.memory_mask(frame_lengths, memory.shape[1]), probe=cross_attention)
        return out.hidden if cross_attention is None else (out.hidden, out.probed)

    def cross_attention(self, features: Tensor, lengths: Tensor | None, tgt_in: Tensor,
                        window: MonotonicWindow | None = None) -> list[Tensor]:
        """Each decoder layer's encoder-decoder attention weights (B, H, L, T'): which frames each output position
        reads (zero on padded frames). Under a monotonic ``window`` the positions are fed one at a time through the
        cache, the window moving as it moves in decoding (zero outside it)."""
        memory, frame_lengths = self.encode_audio(features, lengths)
        if window is None:  # cached decoding equals teacher forcing: one pass gives what decoding saw
            mask = self.memory_mask(frame_lengths, memory.shape[1])
            return self.decoder(tgt_in, memory, mask, need_weights=True).cross_weights
        cache = self.start_decoding(memory, frame_lengths)
        cache.constrain(window)
        steps = [self.decoder.step(tgt_in[:, t : t + 1], cache, probe=AttentionProbe()).probed
                 for t in range(tgt_in.shape[1])]  # per step, per layer (B, H, 1, T')
        return [torch.cat(layer, dim=2) for layer in zip(*steps, strict=True)]

    def ctc_log_probs(self, memory: Tensor) -> Tensor:
        """The CTC head's log-probabilities (B, T', V) of encoded frames (a model with ``ctc_weight`` > 0)."""
        check(self.ctc_head is not None, "this model has no CTC head (ctc_weight 0)")
        return log_softmax_float32(self.ctc_head(memory))

    def loss_terms(self, features: Tensor, lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor,
                   label_smoothing: float = 0.0, *, cross_attention: AttentionProbe | None = None) -> ASRLoss:
        """The joint loss and its parts for targets tgt_in (B, L) = BOS + y and tgt_out (B, L) = y + EOS, both
        padded with pad_id. The cross-entropy is PyTorch's label smoothing (1 - eps on the gold token, eps spread
        over all V); the CTC targets are the rows of tgt_out without their EOS. With ``cross_attention`` the probed
        cross-attention weights come back too (``cross_weights``, from the same forward pass), for the guided
        attention loss that the task adds (:mod:`tformer.training.guided_attention`)."""
        memory, frame_lengths = self.encode_audio(features, lengths)
        logits, probed = self._decode(tgt_in, memory, frame_lengths, cross_attention)
        logits = at_least_float32(logits)  # (B, L, V)
        dec = self.decoder_cfg
        flat, gold = logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1)  # (B*L, V), (B*L,)
        real = tgt_out != dec.pad_id  # (B, L)
        num_tokens = int(real.sum())
        attention = F.cross_entropy(flat, gold, ignore_index=dec.pad_id, label_smoothing=label_smoothing,
                                    reduction="sum") / max(num_tokens, 1)
        nll = F.cross_entropy(flat.detach(), gold, ignore_index=dec.pad_id, reduction="sum")
        if self.ctc_head is None:
            return ASRLoss(attention, attention, nll, None, num_tokens, probed, frame_lengths)
        label_lengths = real.sum(dim=1)  # (B,)
        last = tgt_out.gather(1, (label_lengths - 1).clamp(min=0)[:, None]).squeeze(1)  # (B,) each row's last token
        label_lengths = label_lengths - ((last == dec.eos_id) & (label_lengths > 0)).long()
        ctc = ctc_loss(self.ctc_log_probs(memory), frame_lengths, tgt_out, label_lengths, dec.blank_id)
        w = dec.ctc_weight
        return ASRLoss((1.0 - w) * attention + w * ctc, attention, nll, ctc, num_tokens, probed, frame_lengths)

    def loss(self, features: Tensor, lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor,
             label_smoothing: float = 0.0) -> Tensor:
        """The scalar to minimise (:meth:`loss_terms`' ``loss``)."""
        return self.loss_terms(features, lengths, tgt_in, tgt_out, label_smoothing).loss

    # ---- incremental decoding -----------------------------------------------------------------
    def start_decoding(self, memory: Tensor, frame_lengths: Tensor) -> DecoderCache:
        """A cache holding each layer's cross-attention keys/values of these frames, computed once."""
        return self.decoder.start(memory, self.memory_mask(frame_lengths, memory.shape[1]))

    def decode_step(self, tokens: Tensor, cache: DecoderCache) -> Tensor:
        """Logits (B, t, V) of new decoder inputs tokens (B, t) that continue the cached positions; under the
        cache's monotonic window, if it has one (:meth:`~tformer.nn.cache.DecoderCache.constrain`)."""
        return F.linear(self.decoder.step(tokens, cache).hidden, self.decoder.weight)

    def batch(self, features: Tensor, lengths: Tensor | None = None) -> SpeechBatch:
        """These utterances as the encoder-decoder the decoding engines take (:class:`SpeechBatch`)."""
        return SpeechBatch(self, features, lengths)

    def _limits(self, batch: SpeechBatch, max_len: int | None) -> Tensor:
        """Output limits (B,): ``max_len``, or each utterance's encoder frames + 10; never more than the decoder's
        positions."""
        if max_len is None:
            limits = self.encoder.output_lengths(batch.lengths) + 10
        else:
            limits = torch.full_like(batch.lengths, max_len)
        return limits.clamp(min=1, max=self.decoder_cfg.max_target_len)

    @torch.no_grad()
    def transcribe(self, features: Tensor, lengths: Tensor | None = None, beam_size: int = 1,
                   max_len: int | None = None, length_penalty: float = 0.6, window: MonotonicWindow | None = None
                   ) -> list[list[int]]:
        """Token ids per utterance, without BOS, EOS and padding: greedy search with beam 1, beam search otherwise
        (GNMT length penalty alpha = ``length_penalty``); evaluation mode, the previous mode afterwards. ``window``:
        decode under this monotonic window, in encoder frames (each beam with its own focus), or None."""
        eos = self.decoder_cfg.eos_id
        with eval_mode(self):
            batch = self.batch(features, lengths)
            limits = self._limits(batch, max_len)
            if beam_size == 1:
                rows = greedy_search(batch, batch.src, max_len=limits, window=window).tolist()
            else:
                rows = [list(h[0].tokens) for h in beam_search_nbest(
                    batch, batch.src, beam_size=beam_size, max_len=limits, length_penalty_alpha=length_penalty,
                    window=window)]
        return [row[: row.index(eos)] if eos in row else [t for t in row if t != self.decoder_cfg.pad_id]
                for row in rows]

    @torch.no_grad()
    def transcribe_nbest(self, features: Tensor, lengths: Tensor | None = None, beam_size: int = 4,
                         nbest: int | None = None, max_len: int | None = None, length_penalty: float = 0.6,
                         window: MonotonicWindow | None = None) -> list[list[Hypothesis]]:
        """Beam search's ``nbest`` (default: all) best :class:`~tformer.generation.Hypothesis` per utterance
        (under ``window`` if given)."""
        with eval_mode(self):
            batch = self.batch(features, lengths)
            return beam_search_nbest(batch, batch.src, beam_size=beam_size, max_len=self._limits(batch, max_len),
                                     length_penalty_alpha=length_penalty, nbest=nbest or beam_size, window=window)


class SpeechBatch:
    """One batch of utterances as the :class:`~tformer.generation.protocols.EncoderDecoder` of
    :mod:`tformer.generation`, whose engines take a source tensor: here ``src`` = row numbers (B, 1) int64.

        batch = model.batch(features, lengths)
        beam_search(batch, batch.src, beam_size=4, max_len=50)

    ``encode(src)`` encodes the utterances of those rows; ``start_decoding`` masks each one's padded frames.
    """

    def __init__(self, model: ConformerSeq2Seq, features: Tensor, lengths: Tensor | None = None) -> None:
        b, t = features.shape[:2]
        self.model, self.features = model, features
        self.lengths = torch.full((b,), t, dtype=torch.long, device=features.device) if lengths is None else lengths
        self.src = torch.arange(b, device=features.device)[:, None]  # (B, 1)

    @property
    def cfg(self) -> Seq2SeqConfig:
        """The special ids (pad, BOS, EOS) the engines read."""
        return self.model.decoder_cfg

    def encode(self, src: Tensor) -> Tensor:
        """Rows src[:, 0] -> memory (B', T', D)."""
        rows = src[:, 0]
        return self.model.encode_audio(self.features[rows], self.lengths[rows])[0]

    def start_decoding(self, memory: Tensor, src: Tensor) -> DecoderCache:
        return self.model.start_decoding(memory, self.model.encoder.output_lengths(self.lengths[src[:, 0]]))

    def decode_step(self, tokens: Tensor, cache: DecoderCache) -> Tensor:
        return self.model.decode_step(tokens, cache)
