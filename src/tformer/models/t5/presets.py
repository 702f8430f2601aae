"""T5's choice of parts (T5 v1.0, Raffel et al., 2020, "Exploring the limits of transfer learning with a unified
text-to-text Transformer", §2.1), at T5-small's size.

T5 is the paper's encoder-decoder built from other parts, not another model: each difference is one setting of
:class:`~tformer.models.transformer.config.TransformerConfig`, and the builder
(:mod:`tformer.models.transformer.builders`) turns each into a part through a registry or an argument:

    T5's difference from the paper (§3)                   setting                      the part it selects
    RMSNorm before each sub-layer, one more per stack      norm="pre", norm_type="rms"  nn.norms.NORMS["rms"]
    a learned bias per head and distance bucket, no PE     positional="relative"        nn.positional "relative"
    no biases in W^Q, W^K, W^V, W^O, W_1, W_2              bias=False                   nn.Linear(bias=False)
    unscaled scores (1/sqrt(d_k) folded into W^Q's init)   scale_attention=False        MultiHeadAttention scale 1
    decoder output times d_model^-0.5, tied output layer   scale_output=True            Decoder.output_scale
    dropout after each stack's final norm                  final_dropout=True           Encoder/Decoder.final_dropout
    dropout on attention weights and FFN activations too   attention_dropout, ...      MultiHeadAttention, FFN
    unscaled embeddings drawn N(0, 1)                      scale_embedding, init_std    TokenEmbedding

and decoding starts from the pad id 0 (eos 1, unk 2). :meth:`TransformerConfig.t5_small` is these settings;
``tformer.interop.from_hf_t5`` loads Hugging Face T5 weights into such a configuration.

This module imports no model (the paper's config reads it), so it holds data only.
"""

from __future__ import annotations

from typing import Any

T5_SMALL_SIZE = dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, max_len=512,
                     relative_buckets=32, relative_max_distance=128)  # T5-small: 8 heads of 64 (d_model / h)


def t5_parts(dropout: float = 0.1) -> dict[str, Any]:
    """The settings that make the paper's encoder-decoder T5 (the table above), with P_drop ``dropout`` on the
    sub-layers, the attention weights and the FFN activations."""
    return dict(dropout=dropout, attention_dropout=dropout, activation_dropout=dropout, activation="relu",
                norm="pre", norm_type="rms", layer_norm_eps=1e-6, bias=False, scale_attention=False,
                positional="relative", scale_embedding=False, scale_output=True, final_dropout=True,
                share_embeddings=True, tie_output=True, init_std=1.0, pad_id=0, bos_id=0, eos_id=1, unk_id=2)


def t5_small_settings(**overrides: Any) -> dict[str, Any]:
    """T5-small's configuration as keywords of ``TransformerConfig`` (without ``vocab_size``), ``overrides`` last."""
    return {**T5_SMALL_SIZE, **t5_parts(overrides.get("dropout", 0.1)), **overrides}
