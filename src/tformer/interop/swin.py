"""Hugging Face Swin -> tformer: the same weights give the same hidden states, pooled output and logits.

``transformers.SwinModel`` is :class:`tformer.models.swin.model.SwinTransformer` under other names. What a faithful
copy must honour:

* HF holds patch merging at the end of stage s (``encoder.layers.{s}.downsample``); tformer, as the paper's Fig. 3,
  at the start of stage s + 1 (``stages.{s+1}.merge``);
* the bias table B̂ (``relative_position_bias_table``, ((2M - 1)^2, H)) is copied; the index into it
  (``relative_position_index``, a buffer in older transformers) is not read: tformer computes its own from M;
* the blocks' LayerNorms and the final one use ``layer_norm_eps``; those of the patch embedding and of patch
  merging use PyTorch's default 1e-5 in both;
* ``qkv_bias=False`` drops the query, key and value biases only; the output projection keeps its bias;
* ``use_absolute_embeddings`` (a learned absolute position table, off in Swin) is not supported;
* a stage whose map is smaller than the window: tformer takes the whole map as the window with a table of its size
  (as the reference implementation); Hugging Face keeps the config's table and cannot run such a stage, so such a
  config is refused;
* ``SwinForImageClassification``'s ``classifier`` becomes :class:`SwinClassifier`'s ``head``; the pooler (an
  average, no weights) is the same.

Both the current parameter names (``attention.q_proj``, ``mlp.fc1``, ...) and the older ones
(``attention.self.query``, ``intermediate.dense``, ...) are read. Every other tensor, and every missing or
mis-shaped one, is an error naming the first such tensor, in one line.

``transformers`` is imported by the caller, never by this module.
"""

from __future__ import annotations

import torch

from tformer.errors import TformerError
from tformer.interop.hf_config import activation, read_fields
from tformer.models.swin.config import SwinConfig
from tformer.models.swin.model import SwinClassifier, SwinTransformer

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                "silu": "silu", "swish": "silu"}

# tformer's name inside one block -> Hugging Face's names for it (current, then older transformers).
_BLOCK = {
    "attn_norm": ("layernorm_before",),
    "attn.attention.q_proj": ("attention.q_proj", "attention.self.query"),
    "attn.attention.k_proj": ("attention.k_proj", "attention.self.key"),
    "attn.attention.v_proj": ("attention.v_proj", "attention.self.value"),
    "attn.attention.out_proj": ("attention.o_proj", "attention.output.dense"),
    "ffn_norm": ("layernorm_after",),
    "ffn.w_1": ("mlp.fc1", "intermediate.dense"),
    "ffn.w_2": ("mlp.fc2", "output.dense"),
}
_TABLE = ("attention.relative_position_bias.relative_position_bias_table",
          "attention.self.relative_position_bias_table")
_NOT_COPIED = ("relative_position_index", "embeddings.mask_token")  # name endings

# SwinConfig's field -> HF SwinConfig's attribute, copied as they are.
_FIELDS = {
    "num_channels": "num_channels",
    "embed_dim": "embed_dim",
    "depths": "depths",
    "num_heads": "num_heads",
    "window_size": "window_size",
    "mlp_ratio": "mlp_ratio",
    "qkv_bias": "qkv_bias",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "drop_path_rate": "drop_path_rate",
    "layer_norm_eps": "layer_norm_eps",
    "init_std": "initializer_range",
}
_FLOATS = ("mlp_ratio", "dropout", "attention_dropout", "drop_path_rate", "layer_norm_eps", "init_std")


def _square(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise TformerError(f"tformer's Swin needs a square {name}, got {tuple(value)}")
        value = value[0]
    return int(value)


def config_from_hf_swin(hf_config, num_classes: int = 0) -> SwinConfig:
    """The :class:`SwinConfig` of a ``transformers.SwinConfig`` (with ``num_classes`` outputs; 0 = no head)."""
    c = hf_config
    if getattr(c, "use_absolute_embeddings", False):
        raise TformerError("tformer's Swin has no absolute position embeddings (use_absolute_embeddings=True)")
    cfg = SwinConfig(
        **read_fields(c, _FIELDS, floats=_FLOATS),
        image_size=_square(c.image_size, "image_size"),
        patch_size=_square(c.patch_size, "patch_size"),
        activation=activation(c.hidden_act, _ACTIVATIONS, "Swin"),
        patch_norm=True,
        num_classes=num_classes,
    )
    for s, r in enumerate(cfg.stage_resolutions):
        if r < cfg.window_size:
            raise TformerError(f"stage {s + 1}'s map ({r}x{r}) is smaller than the window ({cfg.window_size}): "
                               "Hugging Face's Swin cannot run it, and tformer's window there is the whole map")
    return cfg


@torch.no_grad()
def from_hf_swin(hf_model) -> SwinTransformer | SwinClassifier:
    """A copy of the weights of a ``transformers.SwinModel`` or ``SwinForImageClassification``.

    Returns:
        For ``SwinModel``: a :class:`SwinTransformer` whose ``model(pixel_values)`` gives
        ``last_hidden_state`` and ``pooler_output`` (as ``pooled_output``).
        For ``SwinForImageClassification``: a :class:`SwinClassifier` whose ``model(pixel_values)`` equals its
        ``logits``, (B, K).

    Raises:
        TformerError: not a Swin model, an unsupported setting, or a missing, unexpected or mis-shaped tensor
            (one line naming the first).
    """
    cfg = getattr(hf_model, "config", None)
    if getattr(cfg, "model_type", None) != "swin":
        raise TformerError(
            f"expected a transformers SwinModel or SwinForImageClassification, got {type(hf_model).__name__}"
        )
    hf = dict(hf_model.state_dict())
    model, prefix = _empty_model(hf_model, hf)
    ours = model.state_dict()  # shares storage with the parameters
    copies = _copies(model.cfg, prefix, classifier=isinstance(model, SwinClassifier))
    used = {_copy_first(hf, names, ours, dst) for names, dst in copies}
    left = [k for k in hf if k not in used and not k.endswith(_NOT_COPIED)]
    if left:
        raise TformerError(f"Swin state dict has a tensor tformer does not know: {left[0]} ({len(left)} in all)")
    return model.train(hf_model.training)


def _empty_model(hf_model, hf: dict[str, torch.Tensor]) -> tuple[SwinTransformer | SwinClassifier, str]:
    """Our model for ``hf_model``, and the prefix of its backbone's names (``swin.`` in both classifiers)."""
    if "classifier.weight" in hf:  # SwinForImageClassification: the backbone is under "swin."
        num_classes = hf["classifier.weight"].shape[0]
        return SwinClassifier(config_from_hf_swin(hf_model.config, num_classes=num_classes)), "swin."
    if hasattr(hf_model, "classifier"):  # num_labels = 0: the "logits" are the pooled output itself
        raise TformerError("SwinForImageClassification without a classifier (num_labels=0): pass its .swin instead")
    return SwinTransformer(config_from_hf_swin(hf_model.config)), ""


def _copies(cfg: SwinConfig, p: str, *, classifier: bool) -> list[tuple[tuple[str, ...], str]]:
    """In copy order: (Hugging Face's candidate names, our name)."""
    wb = ("weight", "bias")
    copies = [((f"{p}embeddings.patch_embeddings.projection.{w}",), f"{p}patch_embed.projection.{w}") for w in wb]
    copies += [((f"{p}embeddings.norm.{w}",), f"{p}patch_embed.norm.{w}") for w in wb]
    for s, depth in enumerate(cfg.depths):
        theirs, mine = f"{p}encoder.layers.{s}.", f"{p}stages.{s}."
        if s > 0:  # HF: the end of the stage before; ours: the start of this one
            before = f"{p}encoder.layers.{s - 1}.downsample."
            copies += [((f"{before}norm.{w}",), f"{mine}merge.norm.{w}") for w in wb]
            copies.append(((f"{before}reduction.weight",), f"{mine}merge.reduction.weight"))
        for i in range(depth):
            block, ours = f"{theirs}blocks.{i}.", f"{mine}layers.{i}."
            for dst, names in _BLOCK.items():
                for w in wb:
                    if w == "bias" and not cfg.qkv_bias and dst.endswith(("q_proj", "k_proj", "v_proj")):
                        continue
                    copies.append((tuple(f"{block}{n}.{w}" for n in names), f"{ours}{dst}.{w}"))
            copies.append((tuple(block + n for n in _TABLE), f"{ours}attn.relative_position_bias_table"))
    copies += [((f"{p}layernorm.{w}",), f"{p}final_norm.{w}") for w in wb]
    if classifier:
        copies += [((f"classifier.{w}",), f"head.{w}") for w in wb]
    return copies


def _copy_first(hf: dict[str, torch.Tensor], candidates: tuple[str, ...], ours: dict[str, torch.Tensor],
                dst: str) -> str:
    """Copies the first of ``candidates`` present in ``hf`` into ``ours[dst]``; returns its name.

    Raises:
        TformerError: none of them is there, or it has another shape (one line naming it).
    """
    name = next((n for n in candidates if n in hf), None)
    if name is None:
        raise TformerError(f"Swin state dict has no {candidates[0]} (for tformer's {dst})")
    src = hf[name]
    if src.shape != ours[dst].shape:
        raise TformerError(f"shape mismatch for {name}: {tuple(src.shape)} in the Swin model, "
                           f"{tuple(ours[dst].shape)} expected for tformer's {dst}")
    ours[dst].copy_(src)
    return name
