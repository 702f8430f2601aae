"""The encoder-decoder Transformer (§3, Figure 1), read top to bottom.

    src ids ──Embeddings──► N × EncoderLayer ──► memory ─┐
                                                          ▼ (cross-attention in every decoder layer)
    tgt_in ids ──Embeddings──► N × DecoderLayer ──► Linear ──► logits ──softmax──► p(y_t | y_<t, x)

``tgt_in`` is the target shifted right behind BOS (teacher forcing); logits at position t predict
target token t. Softmax is left to the loss and to decoding (they need log-probabilities).

The stacks are built from parts by :mod:`tformer.models.transformer.builders` (the choices among parts are
registry lookups there) and run by :mod:`tformer.models.transformer.stacks`. The text-to-text Transformer
(T5) is this model with other parts (RMSNorm, a relative position bias, bias-free projections):
:mod:`tformer.models.t5`.

Shape legend: B batch, S source length, T target length, D d_model, H heads, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tformer.generation import PAPER_BEAM_SIZE, Capabilities, Feature, GenerationOptions
from tformer.generation.search import length_limits, search, search_nbest
from tformer.io.pretrained import Pretrained
from tformer.models.transformer import builders
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.stacks import DecoderOutput
from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import DecoderCache
from tformer.nn.linear import Linear
from tformer.nn.masks import padding_mask
from tformer.nn.modes import eval_mode

# settings by position, as tformer 0.1.0's signatures took them: generate(src, 4, 64) = beam_size=4, max_len=64
GENERATE_POSITIONAL = ("beam_size", "max_len", "min_len", "length_penalty")
NBEST_POSITIONAL = ("beam_size", "nbest", "max_len", "min_len", "length_penalty")


@dataclass
class AttentionMaps:
    """Attention weights of every layer, returned only when asked for (``need_weights=True``).

    Each entry is one layer's weights, (B, H, T_query, T_key).
    """

    encoder: list[Tensor] = field(default_factory=list)  # (B, H, S, S) per layer
    decoder_self: list[Tensor] = field(default_factory=list)  # (B, H, T, T) per layer
    decoder_cross: list[Tensor] = field(default_factory=list)  # (B, H, T, S) per layer


class Transformer(Pretrained, nn.Module):
    """The paper's encoder-decoder model. See the module docstring for the data flow.

    ``save_pretrained`` / ``from_pretrained`` / ``num_parameters`` come from :class:`tformer.io.pretrained.Pretrained`.
    """

    config_class = TransformerConfig

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        src_tokens, tgt_tokens = builders.token_embeddings(cfg)
        self.encoder = builders.encoder(cfg, src_tokens)
        self.decoder = builders.decoder(cfg, tgt_tokens)
        # The pre-softmax linear transformation (§3.4), optionally sharing the target embedding matrix.
        self.output_projection = Linear(cfg.d_model, cfg.target_vocab_size, bias=cfg.output_bias)
        self.pointer_generator = builders.copy_head(cfg)  # the copy mechanism's gate, or None: the output layer only
        # the tokens the output layer scores (ascending ids; output_vocab), or None: all of them
        self.register_buffer("output_ids", None if cfg.output_vocab is None else torch.arange(cfg.output_vocab))
        self._init_weights()
        if cfg.tie_output:
            self.output_projection.weight = tgt_tokens.weight

    def _init_weights(self) -> None:
        builders.init_weights(self, self.cfg)

    # ---- the three plain methods -------------------------------------------------------
    def encode(self, src: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """src (B, S) int64 ids, right-padded with pad_id -> memory (B, S, D) (and weights if asked)."""
        memory, weights = self.encoder(src, padding_mask(src, self.cfg.pad_id), need_weights)
        return (memory, weights) if need_weights else memory

    def decode(
        self, tgt_in: Tensor, memory: Tensor, src: Tensor, *, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits (B, T, V) for decoder input ``tgt_in`` (B, T), given the encoded source.

        ``src`` (B, S) is needed only for its padding: the decoder never attends to source pads.
        """
        out = self.decoder(tgt_in, memory, padding_mask(src, self.cfg.pad_id),
                           need_weights=need_weights or self.copies)
        logits = self._output(out, tgt_in, src)
        return (logits, out.self_weights, out.cross_weights) if need_weights else logits

    def decoder_states(self, src: Tensor, tgt_in: Tensor, *, cross_attention: AttentionProbe | None = None
                       ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """The decoder stack's output (B, T, D), before the pre-softmax linear layer: ``forward`` without
        the last step, for losses that fuse that layer with the softmax
        (:func:`tformer.training.label_smoothing.linear_label_smoothed_loss`). Not for the copy mechanism,
        whose output is more than that layer.

        With ``cross_attention`` also the encoder-decoder attention weights it names, (B, H', T, S) per probed
        layer, from beside the fast attention path (the guided attention loss,
        :mod:`tformer.training.guided_attention`)."""
        if self.copies:
            raise TypeError("decoder_states: with pointer_generator the output distribution needs forward()")
        out = self.decoder(tgt_in, self.encode(src), padding_mask(src, self.cfg.pad_id), probe=cross_attention)
        return out.hidden if cross_attention is None else (out.hidden, list(out.probed))

    def forward(
        self, src: Tensor, tgt_in: Tensor, *, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, AttentionMaps]:
        """Teacher-forced logits (B, T, V); with ``need_weights`` also every layer's attention weights."""
        if not need_weights:
            return self.decode(tgt_in, self.encode(src), src)
        memory, enc_ws = self.encode(src, need_weights=True)
        logits, self_ws, cross_ws = self.decode(tgt_in, memory, src, need_weights=True)
        return logits, AttentionMaps(enc_ws, self_ws, cross_ws)

    # ---- the output layer ----------------------------------------------------------------
    @property
    def copies(self) -> bool:
        """The output mixes in copying (a pointer-generator): it reads the last layer's cross-attention weights
        and the source ids, and is log-probabilities rather than logits."""
        return self.pointer_generator is not None

    def _output(self, out: DecoderOutput, tokens: Tensor, src: Tensor | None) -> Tensor:
        """The pre-softmax linear layer (§3.4): (B, T, D) -> logits (B, T, V), -inf at the tokens it does not score
        (``output_vocab``); with the copy mechanism, log P of the mixture of generating and copying (See et al.,
        Eq. 9), which log_softmax leaves as it is."""
        logits = self._logits(out.hidden)  # (B, T, D) -> (B, T, V)
        if not self.copies:
            return logits
        inputs = self.decoder.embed.tokens(tokens)  # (B, T, D) y_{t-1}
        return self.pointer_generator(logits, out.hidden, inputs, out.cross_weights[-1], src)

    def _logits(self, hidden: Tensor) -> Tensor:
        """The pre-softmax linear layer, (..., D) -> (..., V), -inf at the tokens it does not score (``output_vocab``).

        Decoding computes the whole layer, then the mask: multiplying only the scored rows made the layer 1.3-1.8x
        faster from 8 rows on, but beam search over 500 sentences no faster as a whole (README: a restricted output
        vocabulary). Training multiplies only the scored rows (:meth:`output_layer`)."""
        logits = self.output_projection(hidden)  # (..., D) -> (..., V)
        if self.output_ids is None:
            return logits
        return logits.masked_fill(~self.scored_tokens(), float("-inf"))

    # ---- a restricted output vocabulary (output_vocab) --------------------------------------
    def scored_tokens(self) -> Tensor:
        """(V,) bool: the target tokens the output layer scores (all of them unless ``output_vocab`` is set)."""
        v = self.cfg.target_vocab_size
        if self.output_ids is None:
            return torch.ones(v, dtype=torch.bool, device=self.output_projection.weight.device)
        return torch.zeros(v, dtype=torch.bool, device=self.output_ids.device).index_fill_(0, self.output_ids, True)

    def output_bias(self) -> Tensor:
        """The pre-softmax layer's bias as a (V,) tensor of its own (zeros when it has none), -inf at the tokens it
        does not score: what a runtime without ``output_vocab`` adds to the logits for the same output (the Marian
        and CTranslate2 exports)."""
        bias = self.output_projection.bias
        out = bias.detach().clone() if bias is not None else torch.zeros(self.cfg.target_vocab_size)
        return out.masked_fill_(~self.scored_tokens().to(out.device), float("-inf"))

    def set_output_ids(self, ids: Tensor) -> None:
        """Fill the ``output_ids`` buffer: ``output_vocab`` distinct ascending target ids, among them pad, EOS and
        UNK (the loss counts a gold token outside them as UNK)."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        cfg = self.cfg
        if self.output_ids is None or ids.numel() != cfg.output_vocab:
            raise ValueError(f"set_output_ids: the model scores {cfg.output_vocab or 'all'} tokens, "
                             f"got {ids.numel()} ids")
        if bool((ids[1:] <= ids[:-1]).any()) or int(ids[0]) < 0 or int(ids[-1]) >= cfg.target_vocab_size:
            raise ValueError("set_output_ids: the ids must be distinct, ascending and inside the target vocabulary")
        if not set(ids.tolist()) >= {cfg.pad_id, cfg.eos_id, cfg.unk_id}:
            raise ValueError("set_output_ids: pad, EOS and UNK must be among the scored tokens")
        self.output_ids.copy_(ids)

    def output_layer(self, target: Tensor) -> tuple[Tensor, Tensor | None, Tensor, int]:
        """The pre-softmax layer over the tokens it scores, for losses that fuse it with the softmax
        (:func:`tformer.training.label_smoothing.linear_label_smoothed_loss`): its weight (V', D), its bias (V',)
        or None, the gold ids ``target`` (...) as positions among those tokens, and pad's position. With every
        token scored, that is the layer itself, ``target`` and pad_id. With ``output_vocab``, the ``output_ids``
        rows only (V' = output_vocab), so training computes only those; a gold token outside them (a subword that
        no training target had) counts as UNK, as a word outside a target dictionary does."""
        proj, ids = self.output_projection, self.output_ids
        if ids is None:
            return proj.weight, proj.bias, target, self.cfg.pad_id
        specials = torch.searchsorted(ids, torch.tensor([self.cfg.unk_id, self.cfg.pad_id], device=ids.device))
        pos = torch.searchsorted(ids, target).clamp_(max=ids.numel() - 1)  # (...) where each gold id would stand
        pos = torch.where(ids[pos] == target, pos, specials[0])  # a scored token: its position; any other: UNK's
        bias = None if proj.bias is None else proj.bias.index_select(0, ids)  # (V',)
        return proj.weight.index_select(0, ids), bias, pos, int(specials[1])  # (V', D) rows of the layer

    # ---- incremental decoding ------------------------------------------------------------
    def start_decoding(self, memory: Tensor, src: Tensor) -> DecoderCache:
        """A cache holding each layer's cross-attention keys/values, computed once for this source."""
        return self.decoder.start(memory, padding_mask(src, self.cfg.pad_id), src if self.copies else None)

    def decode_step(self, tokens: Tensor, cache: DecoderCache, *, cross_attention: AttentionProbe | None = None
                    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, t, V) for new decoder inputs ``tokens`` (B, t) that continue the cached positions
        (with the copy mechanism: log-probabilities, which log_softmax leaves as they are). Under the cache's
        monotonic window, if it has one (:meth:`DecoderCache.constrain`).

        With ``cross_attention`` also the encoder-decoder attention weights it names, (B, H', t, S) per probed
        layer (the alignment measures, :func:`tformer.generation.alignment.step_alignment`)."""
        out = self.decoder.step(tokens, cache, need_weights=self.copies, probe=cross_attention)
        logits = self._output(out, tokens, cache.src)
        return logits if cross_attention is None else (logits, list(out.probed))

    def _length_limits(self, src: Tensor, max_len: int | None, min_len: int) -> Tensor:
        """Per-sentence output limits (B,): ``max_len``, or the sentence's own length + 50 (§6.1),
        never more than the decoder's positions (BOS plus max_len - 1 fed-back tokens). The settings are
        checked by :class:`GenerationOptions` (``min_len`` is theirs to check, unused here)."""
        return length_limits(src, self.cfg.pad_id, max_len, self.cfg.max_len)

    capabilities = Capabilities("an autoregressive Transformer", (
        Feature.GREEDY, Feature.BEAM, Feature.NBEST, Feature.SAMPLING, Feature.MIN_LENGTH, Feature.ATTENTION_MAPS,
        Feature.MONOTONIC_WINDOW, Feature.NO_REPEAT_NGRAM, Feature.REPETITION_PENALTY, Feature.FORCED_PREFIX,
        Feature.ENSEMBLE))
    """What this kind decodes with (asked by the Translator, the CLI, the server, plot and export)."""

    @torch.no_grad()
    def generate(self, src: Tensor, options: GenerationOptions | None = None, *values, **settings) -> Tensor:
        """Translate a batch: (B, S) source ids -> (B, L) output ids.

        Each row is the best hypothesis (or the sample) without the leading BOS, ending in EOS
        when the model produced one within the length limit, then padded with pad_id. A searched
        row (greedy or beam) does not depend on the other rows of the batch; a sampled row repeats
        for the same seed and batch only (see :func:`tformer.generation.sample`).

            model.generate(src, beam_size=4, max_len=64, min_len=0, length_penalty=0.6)
            model.generate(src, GenerationOptions(beam_size=4))

        Args:
            options: the settings (:class:`tformer.generation.GenerationOptions`; default: greedy search).
            **settings: fields of :class:`GenerationOptions` as keywords, applied over ``options``:
                ``beam_size`` (1 = greedy search, more = beam search; §6.1: 4), ``max_len`` (the most tokens,
                EOS included; None = each source's length + 50, §6.1), ``min_len`` (EOS is forbidden before),
                ``length_penalty`` (alpha of ((5 + |Y|) / 6)^alpha; §6.1: 0.6), ``do_sample`` with
                ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off) and ``seed``; ``monotonic_window``
                (with ``monotonic_window_back``): attend only within a window that moves forward;
                ``no_repeat_ngram_size`` (n > 0: no output repeats an n-gram); ``repetition_penalty`` (p != 1:
                the scores of tokens already in the output divided by p where positive, multiplied where negative).
        """
        opts = GenerationOptions.of(options, *values, names=GENERATE_POSITIONAL, **settings)
        self.capabilities.check(opts, "generate()")
        limits = self._length_limits(src, opts.max_len, opts.min_len)  # (B,)
        with eval_mode(self):
            return search(self, src, opts, max_len=limits)  # sampling, greedy or beam search, as opts ask

    @torch.no_grad()
    def generate_nbest(self, src: Tensor, options: GenerationOptions | None = None, *values, **settings) -> list:
        """Beam search's ``nbest`` best :class:`tformer.generation.Hypothesis` per sentence (tokens, logprob, score),
        best first. Settings as for :meth:`generate`; here ``beam_size`` defaults to 4 and ``nbest`` to the beam."""
        opts = GenerationOptions.of(options, *values, names=NBEST_POSITIONAL, **settings)
        opts = opts.with_defaults(beam_size=PAPER_BEAM_SIZE)
        opts = opts.with_defaults(nbest=opts.beam_size)
        self.capabilities.check(opts, "generate_nbest()")
        limits = self._length_limits(src, opts.max_len, opts.min_len)
        with eval_mode(self):
            return search_nbest(self, src, opts, max_len=limits)
