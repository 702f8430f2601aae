"""Hugging Face ViT -> tformer: the same weights give the same hidden states and logits.

``transformers.ViTModel`` is the pre-norm encoder of :class:`tformer.models.vit.model.VisionTransformer` under
other names. What a faithful copy must honour:

* the position table is stored as (1, 1 + P, D); ours is (1 + P, D);
* ``qkv_bias=False`` means no query/key/value biases: ours are set to zero (the same function);
* ``hidden_act`` names the MLP activation ("gelu" is the exact GELU, "gelu_new" and "gelu_pytorch_tanh" its
  tanh approximation);
* ``ViTModel``'s optional pooler (a dense layer and tanh on the [class] state, used by nothing in ViT's
  classification) and its masked-image-modelling ``mask_token`` are not copied: the result returns the
  last hidden states, as ``last_hidden_state``;
* ``ViTForImageClassification``'s ``classifier`` becomes :class:`VisionClassifier`'s ``head``.

Both the current parameter names (``layers.{i}.attention.q_proj``, ``mlp.fc1``, ...) and the older ones
(``encoder.layer.{i}.attention.attention.query``, ``intermediate.dense``, ...) are read. Every other tensor,
and every missing or mis-shaped one, is an error naming the first such tensor, in one line.

``transformers`` is imported by the caller, never by this module.
"""

from __future__ import annotations

import torch

from tformer.errors import TformerError
from tformer.models.vit.model import VisionClassifier, VisionConfig, VisionTransformer

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                "silu": "silu", "swish": "silu"}

# tformer's name inside one encoder layer -> Hugging Face's names for it (current, then older transformers).
_LAYER = {
    "self_attn.q_proj": ("attention.q_proj", "attention.attention.query"),
    "self_attn.k_proj": ("attention.k_proj", "attention.attention.key"),
    "self_attn.v_proj": ("attention.v_proj", "attention.attention.value"),
    "self_attn.out_proj": ("attention.o_proj", "attention.output.dense"),
    "self_attn_residual.norm": ("layernorm_before",),
    "ffn.w_1": ("mlp.fc1", "intermediate.dense"),
    "ffn.w_2": ("mlp.fc2", "output.dense"),
    "ffn_residual.norm": ("layernorm_after",),
}
_LAYER_PREFIXES = ("layers.{i}.", "encoder.layer.{i}.")
_NOT_COPIED = ("pooler.", "embeddings.mask_token")


def _square(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise TformerError(f"tformer's ViT needs a square {name}, got {tuple(value)}")
        value = value[0]
    return int(value)


def config_from_hf_vit(hf_config, num_classes: int = 0) -> VisionConfig:
    """The :class:`VisionConfig` of a ``transformers.ViTConfig`` (with ``num_classes`` outputs; 0 = no head)."""
    c = hf_config
    if c.hidden_act not in _ACTIVATIONS:
        raise TformerError(f"unsupported ViT activation {c.hidden_act!r} (supported: {sorted(_ACTIVATIONS)})")
    head_dim = getattr(c, "head_dim", None)
    if head_dim is not None and head_dim * c.num_attention_heads != c.hidden_size:
        raise TformerError(f"tformer needs head_dim * num_attention_heads = hidden_size, got head_dim={head_dim}")
    return VisionConfig(
        image_size=_square(c.image_size, "image_size"),
        patch_size=_square(c.patch_size, "patch_size"),
        num_channels=c.num_channels,
        d_model=c.hidden_size,
        num_heads=c.num_attention_heads,
        d_ff=c.intermediate_size,
        num_layers=c.num_hidden_layers,
        dropout=float(c.hidden_dropout_prob),
        attention_dropout=float(c.attention_probs_dropout_prob),
        activation=_ACTIVATIONS[c.hidden_act],
        layer_norm_eps=float(c.layer_norm_eps),
        num_classes=num_classes,
        init_std=float(c.initializer_range),
    )


@torch.no_grad()
def from_hf_vit(hf_model) -> VisionTransformer | VisionClassifier:
    """A copy of the weights of a ``transformers.ViTModel`` or ``ViTForImageClassification``.

    Returns:
        For ``ViTModel``: a :class:`VisionTransformer` whose ``model(pixel_values)`` equals
        ``hf_model(pixel_values).last_hidden_state``, (B, 1 + P, D) (the pooler is not copied).
        For ``ViTForImageClassification``: a :class:`VisionClassifier` whose ``model(pixel_values)`` equals
        its ``logits``, (B, K).

    Raises:
        TformerError: not a ViT model, an unsupported setting, or a missing, unexpected or mis-shaped tensor
            (one line naming the first).
    """
    cfg = getattr(hf_model, "config", None)
    if getattr(cfg, "model_type", None) != "vit":
        raise TformerError(
            f"expected a transformers ViTModel or ViTForImageClassification, got {type(hf_model).__name__}"
        )
    hf = dict(hf_model.state_dict())
    if "classifier.weight" in hf:  # ViTForImageClassification: the backbone is under "vit."
        model = VisionClassifier(config_from_hf_vit(cfg, num_classes=hf["classifier.weight"].shape[0]))
        src_prefix, dst_prefix = "vit.", "vit."
    elif hasattr(hf_model, "classifier"):  # num_labels = 0: the "logits" are the [class] state itself
        raise TformerError("ViTForImageClassification without a classifier (num_labels=0): pass its .vit instead")
    else:
        model = VisionTransformer(config_from_hf_vit(cfg))
        src_prefix, dst_prefix = "", ""
    ours = model.state_dict()  # shares storage with the parameters
    qkv_bias = bool(getattr(cfg, "qkv_bias", True))
    used: set[str] = set()

    def take(candidates: tuple[str, ...], dst: str, leading_one: bool = False) -> None:
        """Copy the first of ``candidates`` present in the ViT state dict into our ``dst``."""
        name = next((n for n in candidates if n in hf), None)
        if name is None:
            if dst.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) and not qkv_bias:
                ours[dst].zero_()  # qkv_bias=False: no bias is a zero bias
                return
            raise TformerError(f"ViT state dict has no {candidates[0]} (for tformer's {dst})")
        used.add(name)
        src = hf[name]
        if leading_one and src.shape == (1, *ours[dst].shape):
            src = src[0]  # (1, N, D) -> (N, D)
        if src.shape != ours[dst].shape:
            raise TformerError(
                f"shape mismatch for {name}: {tuple(src.shape)} in the ViT model, {tuple(ours[dst].shape)} "
                f"expected for tformer's {dst}"
            )
        ours[dst].copy_(src)

    s, d = src_prefix, dst_prefix
    take((f"{s}embeddings.cls_token",), f"{d}cls_token")
    take((f"{s}embeddings.position_embeddings",), f"{d}positions.weight", leading_one=True)
    for p in ("weight", "bias"):
        take((f"{s}embeddings.patch_embeddings.projection.{p}",), f"{d}patch_embed.projection.{p}")
    for i in range(cfg.num_hidden_layers):
        for dst, names in _LAYER.items():
            for p in ("weight", "bias"):
                candidates = tuple(s + pre.format(i=i) + f"{n}.{p}" for pre in _LAYER_PREFIXES for n in names)
                take(candidates, f"{d}layers.{i}.{dst}.{p}")
    for p in ("weight", "bias"):
        take((f"{s}layernorm.{p}",), f"{d}final_norm.{p}")
        if isinstance(model, VisionClassifier):
            take((f"classifier.{p}",), f"head.{p}")
    left = [k for k in hf if k not in used and not k.removeprefix(s).startswith(_NOT_COPIED)]
    if left:
        raise TformerError(f"ViT state dict has a tensor tformer does not know: {left[0]} ({len(left)} in all)")
    return model.train(hf_model.training)
