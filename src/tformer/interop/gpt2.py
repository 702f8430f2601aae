"""Hugging Face GPT-2 -> tformer: the same weights give the same logits.

GPT-2 (Radford et al., 2019; ``transformers.GPT2LMHeadModel``) is a pre-norm decoder-only Transformer
(:class:`tformer.models.gpt.model.DecoderOnly`). The details a faithful copy must honour:

* its linear layers are ``Conv1D`` modules whose weight is (in, out), the transpose of ``nn.Linear``'s;
* ``attn.c_attn`` fuses W^Q, W^K and W^V side by side into one (D, 3D) matrix;
* ``gelu_new`` is GELU's tanh approximation ("gelu_tanh"); positions are learned; there is no padding
  token (``pad_id`` None) and one id, ``<|endoftext|>``, starts and ends text.

Checkpoint names stay in this file: ``c_attn`` is W^Q|W^K|W^V, ``c_proj`` W^O (or the FFN's W_2),
``c_fc`` the FFN's W_1, ``ln_1`` / ``ln_2`` the sub-layers' LayerNorms, ``ln_f`` the final one,
``wte`` / ``wpe`` the token and position embeddings. ``transformers`` is imported by the caller, never by
this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.config import ConfigError
from tformer.interop.hf_config import activation
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig

# GPT-2's activation_function -> ours ("gelu_new" and "gelu_pytorch_tanh" are the same function).
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu",
                "silu": "silu", "swish": "silu"}


def config_from_gpt2(hf_config, *, tie_output: bool = True) -> DecoderOnlyConfig:
    """The :class:`DecoderOnlyConfig` of a ``transformers.GPT2Config``.

    GPT-2's separate embedding dropout (``embd_pdrop``) becomes the one ``dropout`` (``resid_pdrop``);
    dropout does not change evaluation. A ``pad_token_id`` equal to the EOS id (a common GPT-2 setting)
    means no padding token.

    Raises:
        ConfigError: a GPT-2 variant tformer does not build (cross-attention, unscaled or layer-scaled
            attention, another activation), in one line.
    """
    c = hf_config
    _require(not getattr(c, "add_cross_attention", False), "GPT-2 with cross-attention (add_cross_attention)")
    _require(getattr(c, "scale_attn_weights", True), "GPT-2 without 1/sqrt(d_head) scaling (scale_attn_weights)")
    _require(not getattr(c, "scale_attn_by_inverse_layer_idx", False),
             "GPT-2 with scale_attn_by_inverse_layer_idx")
    act = activation(c.activation_function, _ACTIVATIONS, "GPT-2")
    eos = c.eos_token_id
    pad = getattr(c, "pad_token_id", None)
    return DecoderOnlyConfig(
        vocab_size=c.vocab_size,
        d_model=c.n_embd,
        num_heads=c.n_head,
        d_ff=c.n_inner or 4 * c.n_embd,
        num_layers=c.n_layer,
        max_len=c.n_positions,
        activation=act,
        norm="pre",
        layer_norm_eps=float(c.layer_norm_epsilon),
        dropout=float(c.resid_pdrop),
        attention_dropout=float(c.attn_pdrop),
        tie_output=tie_output,
        pad_id=None if pad in (None, eos) else pad,
        bos_id=c.bos_token_id,
        eos_id=eos,
        init_std=float(c.initializer_range),
    )


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ConfigError(f"tformer does not build {what}")


def _gpt2_layout(cfg: DecoderOnlyConfig, prefix: str) -> list[tuple[str, tuple[int, ...], list[str]]]:
    """Every GPT-2 tensor tformer reads: (its name, the shape it must have, the tformer tensors it fills).

    Conv1D weights are (in, out); ``c_attn`` fills W^Q, W^K, W^V (D, 3D) -> three (D, D).
    """
    d, f = cfg.d_model, cfg.d_ff
    out = [(f"{prefix}wte.weight", (cfg.vocab_size, d), ["tokens.weight"]),
           (f"{prefix}wpe.weight", (cfg.max_len, d), ["positions.weight"])]
    for i in range(cfg.num_layers):
        h, ours = f"{prefix}h.{i}.", f"layers.{i}."
        qkv = [f"{ours}self_attn.{p}_proj" for p in "qkv"]
        out += [
            (f"{h}ln_1.weight", (d,), [f"{ours}self_attn_residual.norm.weight"]),
            (f"{h}ln_1.bias", (d,), [f"{ours}self_attn_residual.norm.bias"]),
            (f"{h}attn.c_attn.weight", (d, 3 * d), [f"{n}.weight" for n in qkv]),
            (f"{h}attn.c_attn.bias", (3 * d,), [f"{n}.bias" for n in qkv]),
            (f"{h}attn.c_proj.weight", (d, d), [f"{ours}self_attn.out_proj.weight"]),
            (f"{h}attn.c_proj.bias", (d,), [f"{ours}self_attn.out_proj.bias"]),
            (f"{h}ln_2.weight", (d,), [f"{ours}ffn_residual.norm.weight"]),
            (f"{h}ln_2.bias", (d,), [f"{ours}ffn_residual.norm.bias"]),
            (f"{h}mlp.c_fc.weight", (d, f), [f"{ours}ffn.w_1.weight"]),
            (f"{h}mlp.c_fc.bias", (f,), [f"{ours}ffn.w_1.bias"]),
            (f"{h}mlp.c_proj.weight", (f, d), [f"{ours}ffn.w_2.weight"]),
            (f"{h}mlp.c_proj.bias", (d,), [f"{ours}ffn.w_2.bias"]),
        ]
    out += [(f"{prefix}ln_f.weight", (d,), ["final_norm.weight"]), (f"{prefix}ln_f.bias", (d,), ["final_norm.bias"])]
    return out


@torch.no_grad()
def from_hf_gpt2(hf_model) -> DecoderOnly:
    """A :class:`DecoderOnly` holding a copy of the weights of a ``transformers.GPT2LMHeadModel`` (or ``GPT2Model``,
    whose output layer is then the tied embedding matrix).

    The copy gives the same logits (to float rounding) for the same, possibly padded, ids. Whether the output
    layer is tied is read from the model's tensors, not trusted from its config.

    Raises:
        ConfigError: an unsupported GPT-2 variant, or a missing or misshapen tensor, in one line naming the first.
    """
    lm_head = getattr(hf_model, "lm_head", None)
    base, prefix = (hf_model.transformer, "transformer.") if lm_head is not None else (hf_model, "")
    tied = lm_head is None or lm_head.weight is base.wte.weight
    cfg = config_from_gpt2(hf_model.config, tie_output=tied)
    model = DecoderOnly(cfg)
    hf = {f"{prefix}{k}": v for k, v in base.state_dict().items()}
    if not tied:
        hf["lm_head.weight"] = lm_head.weight
    ours = model.state_dict()
    layout = _gpt2_layout(cfg, prefix)
    if not tied:
        layout.append(("lm_head.weight", (cfg.vocab_size, cfg.d_model), ["output_projection.weight"]))
    for name, shape, _ in layout:  # check everything before copying anything
        if name not in hf:
            raise ConfigError(f"GPT-2 state dict has no {name}")
        if tuple(hf[name].shape) != shape:
            raise ConfigError(f"GPT-2 tensor {name} has shape {tuple(hf[name].shape)}, expected {shape} "
                              f"({_cfg_line(cfg)})")
    for name, _, targets in layout:
        for target, tensor in zip(targets, _to_ours(name, hf[name], len(targets)), strict=True):
            ours[target].copy_(tensor)
    return model


def _to_ours(name: str, t: Tensor, parts: int) -> list[Tensor]:
    """A GPT-2 tensor in tformer's layout: Conv1D weights transposed to nn.Linear's (out, in), fused q|k|v split."""
    conv1d = name.endswith(".weight") and (".attn.c_" in name or ".mlp.c_" in name)
    pieces = t.chunk(parts, dim=-1)  # c_attn: (D, 3D) -> 3 x (D, D) or (3D,) -> 3 x (D,)
    return [p.t() if conv1d else p for p in pieces]


def _cfg_line(cfg: DecoderOnlyConfig) -> str:
    """The config's shape in a few words, for error messages."""
    return (f"vocab_size={cfg.vocab_size}, d_model={cfg.d_model}, d_ff={cfg.d_ff}, num_layers={cfg.num_layers}, "
            f"max_len={cfg.max_len}")
