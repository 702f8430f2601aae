"""Hugging Face T5 -> tformer: the same weights give the same logits.

T5 (Raffel et al., 2020; ``transformers.T5ForConditionalGeneration``), v1.0 with ``feed_forward_proj="relu"``,
is the paper's encoder-decoder configured differently (:meth:`TransformerConfig.t5_small` has the whole
recipe). The details a faithful copy must honour, each a :class:`TransformerConfig` field:

* no absolute positions (``positional="relative"``): a learned bias per head and bucket of the relative
  distance key - query (``relative_buckets``, ``relative_max_distance``) is added to the self-attention
  scores, with buckets for both directions in the encoder and only for the past in the decoder, none in
  cross-attention; Hugging Face keeps it in layer 0 of each stack, and every layer of the stack adds it;
* attention scores are not scaled by 1/sqrt(d_k) (``scale_attention=False``; T5's initialisation folds
  the factor into W^Q);
* RMSNorm, x / sqrt(mean(x²) + eps) * g without mean or bias (``norm_type="rms"``, eps
  ``layer_norm_epsilon`` = 1e-6), before each sub-layer (``norm="pre"``) and once after each stack;
* no biases in any linear layer (``bias=False``, ``output_bias=False``);
* dropout (``dropout_rate``) also on the attention weights, after the FFN activation and after each
  stack's final norm (``attention_dropout``, ``activation_dropout``, ``final_dropout``);
* embeddings are not scaled by sqrt(d_model) (``scale_embedding=False``);
* the decoder output is multiplied by d_model^-0.5 before the LM head when the model was built for a tied
  output layer (``scale_output``; ``config.scale_decoder_outputs`` in ``transformers`` 5, the
  ``tie_word_embeddings`` flag before);
* a head's width ``d_kv`` may differ from d_model / num_heads (``d_kv``; W^Q: d_model -> h * d_kv);
* decoding starts from ``decoder_start_token_id``, for T5 the pad id 0 (``bos_id=0``); EOS is 1.

Gated FFNs (T5 v1.1, mT5, Flan-T5: ``feed_forward_proj="gated-gelu"``) are not built; they are refused in
one line. Which matrices are shared (encoder and decoder embeddings, LM head) is read from the model's
tensors, not trusted from its config.

Checkpoint names stay in this file: ``block.i.layer.0`` is self-attention, ``layer.1`` cross-attention
(decoder) or the FFN (encoder), ``q/k/v/o`` are W^Q, W^K, W^V, W^O, ``DenseReluDense.wi/wo`` the FFN's
W_1 and W_2, ``shared`` the embedding matrix. ``transformers`` is imported by the caller, never by this module.
"""

from __future__ import annotations

import torch

from tformer.config import ConfigError
from tformer.interop.hf_config import activation
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer

# T5's dense_act_fn (the part of feed_forward_proj after "gated-") -> ours.
_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "silu": "silu", "swish": "silu"}

# Hugging Face tensors that are read from the module attributes, or that T5 never uses.
_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def config_from_t5(
    hf_config, *, share_embeddings: bool | None = None, tie_output: bool | None = None
) -> TransformerConfig:
    """The :class:`TransformerConfig` of a ``transformers.T5Config``.

    ``share_embeddings`` and ``tie_output`` default to True (T5 shares one embedding matrix three ways);
    :func:`from_hf_t5` passes what the model's tensors really do.

    Raises:
        ConfigError: a T5 variant tformer does not build (a gated FFN, an unknown activation), in one line.
    """
    c = hf_config
    act = getattr(c, "dense_act_fn", None) or c.feed_forward_proj.split("-")[-1]
    gated = getattr(c, "is_gated_act", c.feed_forward_proj.startswith("gated-"))
    if gated:
        raise ConfigError(f"T5 feed_forward_proj {c.feed_forward_proj!r} is gated; tformer builds T5 v1.0's "
                          "ungated FFN (feed_forward_proj 'relu')")
    scale_output = getattr(c, "scale_decoder_outputs", None)
    if scale_output is None:  # transformers 4: the tie_word_embeddings flag decides the scaling
        scale_output = bool(getattr(c, "tie_word_embeddings", True))
    eos = c.eos_token_id[0] if isinstance(c.eos_token_id, (list, tuple)) else c.eos_token_id
    start = getattr(c, "decoder_start_token_id", None)
    unk = getattr(c, "unk_token_id", None)
    p = float(c.dropout_rate)
    return TransformerConfig(
        vocab_size=c.vocab_size,
        d_model=c.d_model,
        num_heads=c.num_heads,
        d_kv=c.d_kv,
        d_ff=c.d_ff,
        num_encoder_layers=c.num_layers,
        num_decoder_layers=c.num_decoder_layers if c.num_decoder_layers is not None else c.num_layers,
        dropout=p,
        attention_dropout=p,
        activation_dropout=p,
        activation=activation(act, _ACTIVATIONS, "T5"),
        norm="pre",
        norm_type="rms",
        layer_norm_eps=float(c.layer_norm_epsilon),
        bias=False,
        scale_attention=False,
        positional="relative",
        relative_buckets=c.relative_attention_num_buckets,
        relative_max_distance=c.relative_attention_max_distance,
        max_len=getattr(c, "n_positions", None) or 512,
        scale_embedding=False,
        scale_output=bool(scale_output),
        final_dropout=True,
        share_embeddings=True if share_embeddings is None else share_embeddings,
        tie_output=True if tie_output is None else tie_output,
        output_bias=False,
        pad_id=c.pad_token_id,
        bos_id=c.pad_token_id if start is None else start,
        eos_id=eos,
        unk_id=2 if unk is None else unk,
    )


def _names(stack: str, i: int, decoder: bool) -> dict[str, str]:
    """tformer -> Hugging Face names of layer ``i`` of ``stack``'s tensors."""
    ours, hf = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
    attention = [("self_attn", f"{hf}.0.SelfAttention")]
    if decoder:
        attention.append(("cross_attn", f"{hf}.1.EncDecAttention"))
    names = {}
    for mine, theirs in attention:
        for proj, name in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")):
            names[f"{ours}.{mine}.{proj}.weight"] = f"{theirs}.{name}.weight"
    names[f"{ours}.self_attn_residual.norm.weight"] = f"{hf}.0.layer_norm.weight"
    if decoder:
        names[f"{ours}.cross_attn_residual.norm.weight"] = f"{hf}.1.layer_norm.weight"
    ff = 2 if decoder else 1
    names[f"{ours}.ffn.w_1.weight"] = f"{hf}.{ff}.DenseReluDense.wi.weight"
    names[f"{ours}.ffn.w_2.weight"] = f"{hf}.{ff}.DenseReluDense.wo.weight"
    names[f"{ours}.ffn_residual.norm.weight"] = f"{hf}.{ff}.layer_norm.weight"
    return names


@torch.no_grad()
def from_hf_t5(hf_model) -> Transformer:
    """A :class:`Transformer` holding a copy of the weights of a ``transformers.T5ForConditionalGeneration``.

    The copy gives the same logits (to float rounding) for the same, possibly padded, inputs, and
    ``generate`` gives the tokens of Hugging Face's greedy search (which, unlike tformer's, may also emit
    the pad id, T5's decoder start token).

    Raises:
        ConfigError: an unsupported T5 variant, or a tensor whose name or shape does not match, in one
            line naming the first such tensor.
    """
    if not hasattr(hf_model, "lm_head") or not hasattr(hf_model, "decoder"):
        raise ConfigError(f"from_hf_t5 needs a T5ForConditionalGeneration, got {type(hf_model).__name__}")
    enc_emb = hf_model.encoder.embed_tokens.weight
    dec_emb = hf_model.decoder.embed_tokens.weight
    lm_head = hf_model.lm_head.weight
    cfg = config_from_t5(hf_model.config, share_embeddings=enc_emb is dec_emb, tie_output=lm_head is dec_emb)
    model = Transformer(cfg)
    hf = hf_model.state_dict()
    ours = model.state_dict()

    # The shared matrices come from the modules (state dicts list a tied matrix under several names).
    embeddings = {"encoder.embed.tokens.weight": ("encoder.embed_tokens.weight", enc_emb)}
    if not cfg.share_embeddings:
        embeddings["decoder.embed.tokens.weight"] = ("decoder.embed_tokens.weight", dec_emb)
    if not cfg.tie_output:
        embeddings["output_projection.weight"] = ("lm_head.weight", lm_head)
    names: dict[str, str] = {}  # tformer -> Hugging Face, for everything else
    for stack, n, decoder in (("encoder", cfg.num_encoder_layers, False), ("decoder", cfg.num_decoder_layers, True)):
        names[f"{stack}.relative_bias.weight"] = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        for i in range(n):
            names.update(_names(stack, i, decoder))
        names[f"{stack}.final_norm.weight"] = f"{stack}.final_layer_norm.weight"

    copies: list[tuple[str, torch.Tensor, str]] = []  # (Hugging Face name, tensor, tformer name), checked in order
    for dst_name in ours:
        if dst_name in embeddings:
            src_name, tensor = embeddings[dst_name]
        elif dst_name in ("decoder.embed.tokens.weight", "output_projection.weight"):
            continue  # the second name of a tied matrix
        else:
            src_name = names[dst_name]  # every other tformer tensor has a T5 name
            if src_name not in hf:
                raise ConfigError(f"T5 state dict has no {src_name} (for tformer's {dst_name})")
            tensor = hf[src_name]
        if tensor.shape != ours[dst_name].shape:
            raise ConfigError(f"shape mismatch for T5 tensor {src_name}: {tuple(tensor.shape)} in the T5 model, "
                              f"{tuple(ours[dst_name].shape)} in tformer's {dst_name}")
        copies.append((src_name, tensor, dst_name))
    used = {src_name for src_name, _, _ in copies} | set(_EMBEDDINGS) | set(_UNUSED)
    extra = [name for name in hf if name not in used]
    if extra:
        raise ConfigError(f"T5 tensor {extra[0]} has no counterpart in tformer's T5 configuration")
    for _, tensor, dst_name in copies:
        ours[dst_name].copy_(tensor)
    return model
