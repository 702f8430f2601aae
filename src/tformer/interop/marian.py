"""Hugging Face Marian <-> tformer: the same weights give the same logits, both ways.

Marian (Junczys-Dowmunt et al., 2018; ``transformers.MarianMTModel``) is the paper's post-norm
encoder-decoder. The details a faithful copy must honour:

* its sinusoidal table holds all sines in the first half and all cosines in the second
  (``sinusoidal_layout="halves"``; same frequencies as §3.5);
* ``final_logits_bias`` is added to the output logits (``output_bias=True``); a model that scores only some target
  tokens (``output_vocab``) goes out with -inf there at all the others (``Transformer.output_bias``);
* the decoder starts from ``decoder_start_token_id``, which for Marian is the pad id (``bos_id``);
* embeddings are scaled by sqrt(d_model) only when ``scale_embedding`` is set;
* the FFN activation is configurable ("swish" is SiLU).

Out (:func:`marian_config_fields`, :func:`to_marian_state_dict`): a tformer encoder-decoder that Marian can hold
(post-norm, LayerNorm, sinusoidal positions, biases) becomes a MarianConfig's fields and a state dict; the paper's
interleaved sinusoidal table is handled by permuting the d_model axis (:func:`halves_order`).

``transformers`` is imported by the caller, never by this module.
"""

from __future__ import annotations

import torch

from tformer.interop.hf_config import activation, read_fields
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer

_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "silu", "silu": "silu"}

# TransformerConfig's field -> MarianConfig's attribute, copied as they are.
_FIELDS = {
    "vocab_size": "vocab_size",
    "d_model": "d_model",
    "num_heads": "encoder_attention_heads",
    "d_ff": "encoder_ffn_dim",
    "num_encoder_layers": "encoder_layers",
    "num_decoder_layers": "decoder_layers",
    "dropout": "dropout",
    "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout",
    "max_len": "max_position_embeddings",
    "pad_id": "pad_token_id",
    "bos_id": "decoder_start_token_id",  # Marian's decoder starts from the pad id
    "eos_id": "eos_token_id",
}

# Per-layer parameter names: Hugging Face Marian -> tformer.
_ENCODER_LAYER = {
    "self_attn.q_proj": "self_attn.q_proj",
    "self_attn.k_proj": "self_attn.k_proj",
    "self_attn.v_proj": "self_attn.v_proj",
    "self_attn.out_proj": "self_attn.out_proj",
    "self_attn_layer_norm": "self_attn_residual.norm",
    "fc1": "ffn.w_1",
    "fc2": "ffn.w_2",
    "final_layer_norm": "ffn_residual.norm",
}
_DECODER_LAYER = {
    **_ENCODER_LAYER,
    "encoder_attn.q_proj": "cross_attn.q_proj",
    "encoder_attn.k_proj": "cross_attn.k_proj",
    "encoder_attn.v_proj": "cross_attn.v_proj",
    "encoder_attn.out_proj": "cross_attn.out_proj",
    "encoder_attn_layer_norm": "cross_attn_residual.norm",
}


def config_from_marian(
    hf_config, *, share_embeddings: bool | None = None, tie_output: bool | None = None
) -> TransformerConfig:
    """The :class:`TransformerConfig` of a ``transformers.MarianConfig``.

    ``share_embeddings`` and ``tie_output`` default to what the config says; :func:`from_hf_marian`
    passes what the model's tensors really do (in ``transformers`` 5, ``tie_word_embeddings=False``
    also unties the encoder and decoder embeddings, whatever ``share_encoder_decoder_embeddings`` says).
    """
    c = hf_config
    if c.encoder_attention_heads != c.decoder_attention_heads or c.encoder_ffn_dim != c.decoder_ffn_dim:
        raise ValueError("tformer needs the same number of heads and FFN width in encoder and decoder")
    shared = bool(c.share_encoder_decoder_embeddings) if share_embeddings is None else share_embeddings
    tied = bool(getattr(c, "tie_word_embeddings", True)) if tie_output is None else tie_output
    unk = getattr(c, "unk_token_id", None)
    return TransformerConfig(
        **read_fields(c, _FIELDS, floats=("dropout", "attention_dropout", "activation_dropout")),
        tgt_vocab_size=None if shared else (c.decoder_vocab_size or c.vocab_size),
        activation=activation(c.activation_function, _ACTIVATIONS, "Marian"),
        norm="post",
        layer_norm_eps=1e-5,
        positional="sinusoidal",
        sinusoidal_layout="halves",
        scale_embedding=bool(c.scale_embedding),
        share_embeddings=shared,
        tie_output=tied,
        output_bias=True,
        unk_id=1 if unk is None else unk,
    )


@torch.no_grad()
def from_hf_marian(hf_model) -> Transformer:
    """A :class:`Transformer` holding a copy of the weights of a ``transformers.MarianMTModel``.

    The copy gives the same logits (to float rounding) for the same, possibly padded, inputs.
    Which matrices are shared is read from the model's tensors, not trusted from its config.
    """
    enc_emb = hf_model.get_encoder().embed_tokens.weight
    dec_emb = hf_model.get_decoder().embed_tokens.weight
    lm_head = hf_model.lm_head.weight
    cfg = config_from_marian(hf_model.config, share_embeddings=enc_emb is dec_emb, tie_output=lm_head is dec_emb)
    model = Transformer(cfg)
    hf = hf_model.state_dict()
    ours = model.state_dict()
    copies: list[tuple[str, torch.Tensor, str]] = [("encoder embeddings", enc_emb, "encoder.embed.tokens.weight")]
    if not cfg.share_embeddings:
        copies.append(("decoder embeddings", dec_emb, "decoder.embed.tokens.weight"))
    if not cfg.tie_output:
        copies.append(("lm_head.weight", lm_head, "output_projection.weight"))
    copies.append(("final_logits_bias", hf["final_logits_bias"].view(-1), "output_projection.bias"))
    for stack, n, table in (("encoder", cfg.num_encoder_layers, _ENCODER_LAYER),
                            ("decoder", cfg.num_decoder_layers, _DECODER_LAYER)):
        for i in range(n):
            for src_name, dst_name in table.items():
                for p in ("weight", "bias"):
                    name = f"model.{stack}.layers.{i}.{src_name}.{p}"
                    if name not in hf:
                        raise ValueError(f"Marian state dict has no {name}")
                    copies.append((name, hf[name], f"{stack}.layers.{i}.{dst_name}.{p}"))
    for name, tensor, dst_name in copies:
        if tensor.shape != ours[dst_name].shape:
            raise ValueError(f"shape mismatch for {name}: {tuple(tensor.shape)} vs {tuple(ours[dst_name].shape)}")
        ours[dst_name].copy_(tensor)
    return model


# ----------------------------------------------------------------------------------------- tformer -> Marian

# What a Marian model is fixed to, as (our field, the value Marian has, what to say when it differs).
_MARIAN_FIXED = (
    ("norm", "post", "Marian is post-norm"),
    ("norm_type", "layer", "Marian uses LayerNorm"),
    ("layer_norm_eps", 1e-5, "Marian's LayerNorm epsilon is 1e-5"),
    ("bias", True, "Marian's linear layers have biases"),
    ("scale_attention", True, "Marian scales attention scores by 1/sqrt(d_k)"),
    ("positional", "sinusoidal", "Marian has sinusoidal positions"),
    ("scale_output", False, "Marian does not rescale the decoder output"),
    ("pointer_generator", False, "Marian has no copy mechanism"),
)


def marian_config_fields(cfg: TransformerConfig) -> dict:
    """The ``transformers.MarianConfig`` keyword arguments of an encoder-decoder :class:`TransformerConfig`.

    Raises:
        ValueError: one line naming the first setting a Marian model cannot hold.
    """
    for field, value, why in _MARIAN_FIXED:
        if getattr(cfg, field) != value:
            raise ValueError(f"model.{field} is {getattr(cfg, field)!r}: {why}")
    if cfg.d_kv not in (None, cfg.d_model // cfg.num_heads):
        raise ValueError(f"model.d_kv is {cfg.d_kv}: Marian's heads have d_model / num_heads dimensions")
    if cfg.attention.kind not in ("full", "reference", "chunked") or cfg.cross_attention.kind != "dot":
        raise ValueError("Marian computes exact dot-product attention (attention.kind full, cross_attention dot)")
    fields = {theirs: getattr(cfg, ours) for ours, theirs in _FIELDS.items()}
    act = {"relu": "relu", "gelu": "gelu", "silu": "swish"}
    if cfg.activation not in act:
        raise ValueError(f"model.activation is {cfg.activation!r}: Marian takes {', '.join(act)}")
    return {**fields, "decoder_attention_heads": cfg.num_heads, "decoder_ffn_dim": cfg.d_ff,
            "decoder_vocab_size": cfg.target_vocab_size, "activation_function": act[cfg.activation],
            "scale_embedding": cfg.scale_embedding, "share_encoder_decoder_embeddings": cfg.share_embeddings,
            "tie_word_embeddings": cfg.tie_output and cfg.share_embeddings, "forced_eos_token_id": None,
            "unk_token_id": cfg.unk_id}


def halves_order(d_model: int) -> torch.Tensor:
    """The permutation of the d_model axis that turns the paper's interleaved sinusoidal table into Marian's halves
    (sines of every frequency, then cosines): Marian's dimension j is our dimension ``order[j]``."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


# Which axis of each of our parameters is the d_model (residual stream) axis: 1 = inputs, 0 = outputs.
_HIDDEN_AXIS = {"q_proj.weight": 1, "k_proj.weight": 1, "v_proj.weight": 1, "out_proj.weight": 0,
                "out_proj.bias": 0, "w_1.weight": 1, "w_2.weight": 0, "w_2.bias": 0, "norm.weight": 0,
                "norm.bias": 0, "tokens.weight": 1, "output_projection.weight": 1}


@torch.no_grad()
def to_marian_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under ``transformers.MarianMTModel``'s names, for a model :func:`marian_config_fields` accepts.

    A model with the paper's interleaved sinusoidal table is permuted along d_model (:func:`halves_order`):
    every operation of the residual stream (embeddings, projections, LayerNorm) is the same on permuted
    coordinates, so the Marian model computes exactly the same function. Marian's own position table is not
    included (it builds it). A shared matrix appears under each of Marian's names.
    """
    cfg = model.cfg
    order = halves_order(cfg.d_model) if cfg.sinusoidal_layout == "interleaved" else None

    def hidden(name: str, t: torch.Tensor) -> torch.Tensor:
        axis = next((a for suffix, a in _HIDDEN_AXIS.items() if name.endswith(suffix)), None)
        t = t.detach().clone()
        return t if order is None or axis is None else t.index_select(axis, order).contiguous()

    ours = model.state_dict()
    out = {"model.encoder.embed_tokens.weight": hidden("tokens.weight", ours["encoder.embed.tokens.weight"])}
    dec = "encoder" if cfg.share_embeddings else "decoder"
    out["model.decoder.embed_tokens.weight"] = hidden("tokens.weight", ours[f"{dec}.embed.tokens.weight"])
    if cfg.share_embeddings:
        out["model.shared.weight"] = out["model.encoder.embed_tokens.weight"]
    head = "output_projection.weight" if not cfg.tie_output else f"{dec}.embed.tokens.weight"
    out["lm_head.weight"] = hidden("output_projection.weight", ours[head])
    out["final_logits_bias"] = model.output_bias().view(1, -1)
    for stack, n, table in (("encoder", cfg.num_encoder_layers, _ENCODER_LAYER),
                            ("decoder", cfg.num_decoder_layers, _DECODER_LAYER)):
        for i in range(n):
            for hf_name, our_name in table.items():
                for p in ("weight", "bias"):
                    name = f"{stack}.layers.{i}.{our_name}.{p}"
                    out[f"model.{stack}.layers.{i}.{hf_name}.{p}"] = hidden(name, ours[name])
    return out
