"""Non-autoregressive translation: the conditional masked language model (CMLM) of Mask-Predict
(Ghazvininejad, Levy, Liu & Zettlemoyer, 2019), in the line of Gu et al.'s NAT (2018).

    src ──Embeddings──► N × EncoderLayer ──► memory ──► mean over real positions ──► Linear ──► p(|y| | x)
                                               │ (cross-attention in every decoder layer)
    y, some tokens replaced by <mask> ──Embeddings──► N × DecoderLayer ──► Linear ──► p(y_i | y_obs, x), all i
                                   (self-attention over ALL target positions: no causal mask)

The encoder and the decoder layers are the paper's (§3.1); what changes is the decoder's self-attention,
which sees the whole target (its padding mask instead of the causal mask), and what it reads: the target
with some tokens hidden behind a ``<mask>`` token instead of the target shifted right. There is no BOS and
no EOS on the decoder side: the length comes from the length predictor.

Training (:mod:`tformer.tasks.cmlm`): draw n ~ U{1, ..., |y|}, hide n random target tokens, predict them;
the loss is the label-smoothed cross-entropy of the hidden tokens plus ``length_loss_weight`` times the
cross-entropy of the length predictor.

Decoding (:func:`tformer.generation.mask_predict.mask_predict`): take the ``length_candidates`` most likely
lengths; start from all ``<mask>``; predict every token at once; then, for ``iterations - 1`` more rounds,
hide the n = |y| (T - t) / T least confident tokens again and predict them from the others; keep the
candidate with the best mean log-probability. One round is one decoder pass over all positions at once.

Shape legend: B batch, S source length, T target length, D d_model, V target vocabulary, L max_target_len.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.generation import Capabilities, Feature, GenerationOptions
from tformer.generation.mask_predict import mask_predict
from tformer.generation.options import MASK_PREDICT_ITERATIONS, MASK_PREDICT_LENGTHS
from tformer.io.pretrained import Pretrained
from tformer.models.cmlm.config import CMLMConfig
from tformer.models.transformer import builders
from tformer.nn.masks import padding_mask
from tformer.nn.modes import eval_mode


class LengthPredictor(nn.Module):
    """p(|y| | x): the encoder output averaged over the real source positions, then a linear layer
    over the lengths 0..L (Ghazvininejad et al. read a special LENGTH token instead; the mean needs no
    change to the encoder's input)."""

    def __init__(self, d_model: int, max_target_len: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, max_target_len + 1)

    def forward(self, memory: Tensor, src_real: Tensor) -> Tensor:
        """memory (B, S, D), src_real (B, S) bool (True = real token) -> length logits (B, L + 1)."""
        real = src_real.unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
        pooled = (memory * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)  # (B, D)
        return self.proj(pooled)


class CMLM(Pretrained, nn.Module):
    """The conditional masked language model (see the module docstring). ``cfg`` is a :class:`CMLMConfig`."""

    config_class = CMLMConfig

    def __init__(self, cfg: CMLMConfig) -> None:
        nn.Module.__init__(self)
        self.cfg = cfg
        v = cfg.target_vocab_size
        # The target embedding has one more row, the mask token (id V); a shared matrix carries it too.
        src_tokens, tgt_tokens = builders.token_embeddings(cfg, extra_target_rows=1)
        self.encoder = builders.encoder(cfg, src_tokens)
        self.decoder = builders.decoder(cfg, tgt_tokens)  # run by decoder.bidirectional: no causal mask
        self.length_predictor = LengthPredictor(cfg.d_model, cfg.max_target_len)
        # The pre-softmax layer over the V real tokens (never <mask>): the first V rows of the target
        # embedding when tied (§3.4), else a matrix of its own.
        self.output_projection = None if cfg.tie_output else nn.Linear(cfg.d_model, v, bias=cfg.output_bias)
        self.output_bias = nn.Parameter(torch.zeros(v)) if cfg.tie_output and cfg.output_bias else None
        builders.init_weights(self, cfg)

    # ---- the pieces ------------------------------------------------------------------------
    def output_weight(self) -> tuple[Tensor, Tensor | None]:
        """The pre-softmax matrix (V, D) and bias (V,) or None."""
        if self.output_projection is not None:
            return self.output_projection.weight, self.output_projection.bias
        return self.decoder.embed.tokens.weight[: self.cfg.target_vocab_size], self.output_bias

    def encode(self, src: Tensor) -> Tensor:
        """src (B, S) ids, right-padded -> memory (B, S, D)."""
        memory, _ = self.encoder(src, padding_mask(src, self.cfg.pad_id))
        return memory

    def predict_length(self, memory: Tensor, src: Tensor) -> Tensor:
        """Length logits (B, L + 1) from the encoded source."""
        return self.length_predictor(memory, src != self.cfg.pad_id)

    def decoder_states(self, tgt_in: Tensor, memory: Tensor, src: Tensor, cross_kv: list | None = None) -> Tensor:
        """The decoder output (B, T, D) for ``tgt_in`` (B, T): target ids with some replaced by
        ``cfg.mask_id``, right-padded; every position attends to every real target position.
        ``cross_kv``: each layer's projected ``memory`` when decoding repeatedly (``memory`` is then unused)."""
        return self.decoder.bidirectional(tgt_in, memory if cross_kv is None else cross_kv,
                                          padding_mask(src, self.cfg.pad_id),
                                          self_mask=padding_mask(tgt_in, self.cfg.pad_id)).hidden

    def token_logits(self, hidden: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, V)."""
        if self.output_projection is not None:  # a module of its own (int8 quantization may replace it)
            return self.output_projection(hidden)
        weight, bias = self.output_weight()
        return F.linear(hidden, weight, bias)

    def forward(self, src: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Token logits (B, T, V) at every target position, and length logits (B, L + 1)."""
        memory = self.encode(src)
        return self.token_logits(self.decoder_states(tgt_in, memory, src)), self.predict_length(memory, src)

    def project_memory(self, memory: Tensor) -> list:
        """Each decoder layer's cross-attention keys and values of ``memory`` (B, S, D), for repeated passes."""
        return [layer.cross_attn.project_kv(memory) for layer in self.decoder.layers]

    # ---- translation -----------------------------------------------------------------------
    capabilities = Capabilities("a non-autoregressive CMLM", (Feature.MASK_PREDICT,))
    """What this kind decodes with (asked by the Translator, the CLI, the server, plot and export)."""

    @torch.no_grad()
    def generate(self, src: Tensor, options: GenerationOptions | None = None, *values, **settings) -> Tensor:
        """Translate a batch by mask-predict: (B, S) source ids -> (B, L) output ids ending in EOS, pad-filled
        (the same form as :meth:`tformer.Transformer.generate`).

        Args:
            options: the settings (:class:`tformer.generation.GenerationOptions`). A CMLM reads three of them;
                asking for beam search, sampling or a minimum length is refused (see :attr:`capabilities`).
            **settings: fields of :class:`GenerationOptions` as keywords, applied over ``options``:
                ``iterations``: decoder passes, T (the first predicts every token; each later one re-predicts the
                least confident; default 10); ``length_candidates``: how many of the most likely lengths are
                decoded, in parallel, the best mean log-probability winning (Mask-Predict's "length beam";
                default 3); ``max_len``: the most tokens, EOS included (None = ``cfg.max_target_len`` + 1).
        """
        opts = GenerationOptions.of(options, *values, names=("iterations", "length_candidates", "max_len"), **settings)
        self.capabilities.check(opts, "generate()")
        with eval_mode(self):
            return mask_predict(self, src, iterations=opts.iterations or MASK_PREDICT_ITERATIONS,
                                length_candidates=opts.length_candidates or MASK_PREDICT_LENGTHS, max_len=opts.max_len)
