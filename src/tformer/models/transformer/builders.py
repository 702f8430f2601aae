"""The encoder-decoder's builder: reads a :class:`TransformerConfig` once and assembles the parts of
:mod:`tformer.nn` into stacks. Every choice among parts is a registry lookup here:

    norm_type        -> tformer.nn.norms.NORMS                       LayerNorm (the paper) or RMSNorm (T5)
    positional       -> tformer.nn.positional.POSITIONAL_SCHEMES     sinusoidal, learned or a relative bias (T5)
    attention.kind   -> tformer.nn.attention_algorithms              full, reference, chunked, sliding, ...
    cross_attention.kind -> tformer.nn.cross_attention               dot (the paper), location, monotonic
    activation       -> tformer.nn.feedforward                       ReLU (the paper), GELU, SiLU

and the remaining options are arguments of the parts (``bias``, ``d_kv`` and ``scale_attention`` of the
attention projections; ``bias`` of the FFN; ``norm`` = pre or post of the residual connections). The layers
themselves (:mod:`tformer.nn.layers`) take the parts built.

The parts are built in the order the model registers them, so that a seeded model draws its initial values in
the same order as ever (saved weights and seeded runs stay what they were).

Shape legend: D d_model, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from tformer.config import AttentionConfig
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.stacks import Decoder, Encoder
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.attention_algorithms import causal_attention_config, cross_attention_config
from tformer.nn.copy import PointerGenerator
from tformer.nn.cross_attention import build_cross_attention
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import Embeddings, TokenEmbedding
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import DecoderLayer, EncoderLayer
from tformer.nn.norms import build_norm
from tformer.nn.positional import PositionSpec, StackPositions, build_positions


# ---- parts -----------------------------------------------------------------------------------------------
def norm(cfg: TransformerConfig) -> nn.Module:
    """The norm of a residual connection or a stack's end: ``norm_type`` over D, eps ``layer_norm_eps``."""
    return build_norm(cfg.norm_type, cfg.d_model, cfg.layer_norm_eps)


def attention(cfg: TransformerConfig, algorithm: AttentionConfig | None, max_len: int | None = None
              ) -> MultiHeadAttention:
    """Multi-head attention (§3.2.2) with the config's head width, biases and scaling, computing Eq. 1 with
    ``algorithm`` (None = full) over at most ``max_len`` positions."""
    return MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout, d_head=cfg.d_kv, bias=cfg.bias,
                              scale_scores=cfg.scale_attention, attention=algorithm, max_len=max_len)


def cross_attention(cfg: TransformerConfig) -> MultiHeadAttention:
    """The encoder-decoder attention ``cross_attention`` names (dot: the paper's, computing Eq. 1 chunked where
    the config's self-attention is chunked, else full), with the config's head width, biases and scaling."""
    return build_cross_attention(cfg.cross_attention, cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                 d_head=cfg.d_kv, bias=cfg.bias, scale_scores=cfg.scale_attention,
                                 attention=cross_attention_config(cfg.attention))


def feedforward(cfg: TransformerConfig) -> PositionwiseFeedForward:
    """The FFN of Eq. 2; without ``bias`` (T5) W_1 and W_2 have no b_1, b_2."""
    return PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.activation_dropout, bias=cfg.bias)


def positions(cfg: TransformerConfig, *, bidirectional: bool) -> StackPositions:
    """One stack's positional parts (absolute, or a relative bias over both directions or only the past)."""
    spec = PositionSpec(cfg.max_len, cfg.d_model, cfg.num_heads, sinusoidal_layout=cfg.sinusoidal_layout,
                        relative_buckets=cfg.relative_buckets, relative_max_distance=cfg.relative_max_distance,
                        bidirectional=bidirectional, relative_std=cfg.d_model**-0.5)
    return build_positions(cfg.positional, spec)


def token_embeddings(cfg: TransformerConfig, extra_target_rows: int = 0) -> tuple[TokenEmbedding, TokenEmbedding]:
    """The source and target embeddings (§3.4), one matrix when shared; the target's has ``extra_target_rows``
    more rows (a CMLM's mask token), and so has a shared matrix."""
    def tokens(rows: int) -> TokenEmbedding:
        return TokenEmbedding(rows, cfg.d_model, scale=cfg.scale_embedding, std=cfg.init_std)

    src = tokens(cfg.vocab_size + (extra_target_rows if cfg.share_embeddings else 0))
    return src, src if cfg.share_embeddings else tokens(cfg.target_vocab_size + extra_target_rows)


def copy_head(cfg: TransformerConfig) -> PointerGenerator | None:
    """The copy mechanism's gate (See et al., 2017) when ``pointer_generator``; None = the plain output layer."""
    return PointerGenerator(cfg.d_model) if cfg.pointer_generator else None


# ---- layers and stacks -------------------------------------------------------------------------------------
def encoder_layer(cfg: TransformerConfig) -> EncoderLayer:
    """Self-attention with the config's algorithm, then the FFN."""
    self_attn = attention(cfg, cfg.attention, cfg.max_len)
    self_attn_norm = norm(cfg)
    return EncoderLayer(self_attn, feedforward(cfg), self_attn_norm=self_attn_norm, ffn_norm=norm(cfg),
                        dropout=cfg.dropout, pre_norm=cfg.norm == "pre")


def decoder_layer(cfg: TransformerConfig) -> DecoderLayer:
    """Masked self-attention with the config's algorithm where it can be causal (else full), the config's
    cross-attention (:func:`cross_attention`), then the FFN."""
    self_attn = attention(cfg, causal_attention_config(cfg.attention), cfg.max_len)
    self_attn_norm = norm(cfg)
    cross_attn = cross_attention(cfg)
    cross_attn_norm = norm(cfg)
    return DecoderLayer(self_attn, cross_attn, feedforward(cfg), self_attn_norm=self_attn_norm,
                        cross_attn_norm=cross_attn_norm, ffn_norm=norm(cfg), dropout=cfg.dropout,
                        pre_norm=cfg.norm == "pre")


def _stack_end(cfg: TransformerConfig) -> dict[str, nn.Module]:
    """A pre-norm stack ends in a norm (post-norm ones already did), then dropout with ``final_dropout`` (T5)."""
    return dict(final_norm=norm(cfg) if cfg.norm == "pre" else nn.Identity(),
                final_dropout=Dropout(cfg.dropout) if cfg.final_dropout else nn.Identity())


def encoder(cfg: TransformerConfig, tokens: TokenEmbedding) -> Encoder:
    """Embeddings (with absolute positions or none), a relative bias or none, N encoder layers, the stack's end."""
    parts = positions(cfg, bidirectional=True)
    embed = Embeddings(tokens, parts.absolute, cfg.dropout, cfg.max_len)
    layers = nn.ModuleList(encoder_layer(cfg) for _ in range(cfg.num_encoder_layers))
    return Encoder(embed, layers, relative_bias=parts.score_bias, **_stack_end(cfg))


def decoder(cfg: TransformerConfig, tokens: TokenEmbedding) -> Decoder:
    """As :func:`encoder` with decoder layers; ``scale_output`` (T5) scales the output by d_model^-0.5."""
    parts = positions(cfg, bidirectional=False)
    embed = Embeddings(tokens, parts.absolute, cfg.dropout, cfg.max_len)
    layers = nn.ModuleList(decoder_layer(cfg) for _ in range(cfg.num_decoder_layers))
    return Decoder(embed, layers, relative_bias=parts.score_bias, **_stack_end(cfg),
                   output_scale=cfg.d_model**-0.5 if cfg.scale_output else None)


# ---- initial values ----------------------------------------------------------------------------------------
def init_weights(model: nn.Module, cfg: TransformerConfig) -> None:
    """Xavier-uniform projection matrices and zero biases (as tensor2tensor / fairseq); embeddings
    are drawn N(0, d_model^-1/2) in :class:`TokenEmbedding`, so that embedding * sqrt(d_model) has unit scale.
    Without ``scale_attention`` the missing 1/sqrt(d_k) is folded into W^Q's initial values (as T5 does)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if not cfg.scale_attention:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, MultiHeadAttention):
                    module.q_proj.weight.mul_(module.d_head**-0.5)
