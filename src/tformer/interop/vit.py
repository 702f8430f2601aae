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
from tformer.interop.hf_config import activation, read_fields
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
_QKV_BIASES = ("q_proj.bias", "k_proj.bias", "v_proj.bias")
_NOT_COPIED = ("pooler.", "embeddings.mask_token")

# VisionConfig's field -> ViTConfig's attribute, copied as they are.
_FIELDS = {
    "num_channels": "num_channels",
    "d_model": "hidden_size",
    "num_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
    "num_layers": "num_hidden_layers",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "layer_norm_eps": "layer_norm_eps",
    "init_std": "initializer_range",
}


def _square(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise TformerError(f"tformer's ViT needs a square {name}, got {tuple(value)}")
        value = value[0]
    return int(value)


def config_from_hf_vit(hf_config, num_classes: int = 0) -> VisionConfig:
    """The :class:`VisionConfig` of a ``transformers.ViTConfig`` (with ``num_classes`` outputs; 0 = no head)."""
    c = hf_config
    act = activation(c.hidden_act, _ACTIVATIONS, "ViT")
    head_dim = getattr(c, "head_dim", None)
    if head_dim is not None and head_dim * c.num_attention_heads != c.hidden_size:
        raise TformerError(f"tformer needs head_dim * num_attention_heads = hidden_size, got head_dim={head_dim}")
    return VisionConfig(
        **read_fields(c, _FIELDS, floats=("dropout", "attention_dropout", "layer_norm_eps", "init_std")),
        image_size=_square(c.image_size, "image_size"),
        patch_size=_square(c.patch_size, "patch_size"),
        activation=act,
        num_classes=num_classes,
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
    model, prefix = _empty_model(hf_model, hf)
    ours = model.state_dict()  # shares storage with the parameters
    zero_if_missing = () if getattr(cfg, "qkv_bias", True) else _QKV_BIASES  # qkv_bias=False: no bias is zero bias
    copies = _copies(cfg.num_hidden_layers, prefix, classifier=isinstance(model, VisionClassifier))
    used = {_copy_first(hf, names, ours, dst, leading_one=one, zero_if_missing=zero_if_missing)
            for names, dst, one in copies}
    left = [k for k in hf if k not in used and not k.removeprefix(prefix).startswith(_NOT_COPIED)]
    if left:
        raise TformerError(f"ViT state dict has a tensor tformer does not know: {left[0]} ({len(left)} in all)")
    return model.train(hf_model.training)


def _empty_model(hf_model, hf: dict[str, torch.Tensor]) -> tuple[VisionTransformer | VisionClassifier, str]:
    """Our model for ``hf_model``, and the prefix of its backbone's names (the same in both state dicts)."""
    if "classifier.weight" in hf:  # ViTForImageClassification: the backbone is under "vit."
        num_classes = hf["classifier.weight"].shape[0]
        return VisionClassifier(config_from_hf_vit(hf_model.config, num_classes=num_classes)), "vit."
    if hasattr(hf_model, "classifier"):  # num_labels = 0: the "logits" are the [class] state itself
        raise TformerError("ViTForImageClassification without a classifier (num_labels=0): pass its .vit instead")
    return VisionTransformer(config_from_hf_vit(hf_model.config)), ""


def _copies(num_layers: int, prefix: str, *, classifier: bool) -> list[tuple[tuple[str, ...], str, bool]]:
    """In copy order: (Hugging Face's candidate names, our name, whether theirs has a leading dimension of 1)."""
    p = prefix
    copies = [((f"{p}embeddings.cls_token",), f"{p}cls_token", False),
              ((f"{p}embeddings.position_embeddings",), f"{p}positions.weight", True)]
    copies += [((f"{p}embeddings.patch_embeddings.projection.{w}",), f"{p}patch_embed.projection.{w}", False)
               for w in ("weight", "bias")]
    for i in range(num_layers):
        for dst, names in _LAYER.items():
            for w in ("weight", "bias"):
                candidates = tuple(p + pre.format(i=i) + f"{n}.{w}" for pre in _LAYER_PREFIXES for n in names)
                copies.append((candidates, f"{p}layers.{i}.{dst}.{w}", False))
    for w in ("weight", "bias"):
        copies.append(((f"{p}layernorm.{w}",), f"{p}final_norm.{w}", False))
        if classifier:
            copies.append(((f"classifier.{w}",), f"head.{w}", False))
    return copies


def _copy_first(hf: dict[str, torch.Tensor], candidates: tuple[str, ...], ours: dict[str, torch.Tensor], dst: str,
                *, leading_one: bool, zero_if_missing: tuple[str, ...]) -> str | None:
    """Copies the first of ``candidates`` present in ``hf`` into ``ours[dst]``; returns its name.

    A missing tensor whose name ends with one of ``zero_if_missing`` is zeroed (None is returned); any other
    missing tensor, or one of another shape, is a TformerError naming it.
    """
    name = next((n for n in candidates if n in hf), None)
    if name is None:
        if dst.endswith(zero_if_missing):
            ours[dst].zero_()
            return None
        raise TformerError(f"ViT state dict has no {candidates[0]} (for tformer's {dst})")
    src = hf[name]
    if leading_one and src.shape == (1, *ours[dst].shape):
        src = src[0]  # (1, N, D) -> (N, D)
    if src.shape != ours[dst].shape:
        raise TformerError(
            f"shape mismatch for {name}: {tuple(src.shape)} in the ViT model, {tuple(ours[dst].shape)} "
            f"expected for tformer's {dst}"
        )
    ours[dst].copy_(src)
    return name
