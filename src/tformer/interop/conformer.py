"""Hugging Face ``Wav2Vec2ConformerEncoder`` -> tformer's Conformer blocks: the same weights give the same frames.

What the two share is the stack of Conformer blocks (Eq. 1 of Gulati et al., 2020) and its relative positions
(``position_embeddings_type="relative"``: Transformer-XL's sinusoids, W_R = ``linear_pos``, u = ``pos_bias_u``,
v = ``pos_bias_v``) or no positions (``position_embeddings_type=None``; Hugging Face's "rotary" has no
counterpart here). The front ends differ: wav2vec 2.0's convolutional feature encoder and feature projection
read raw audio, ours subsamples log-mel features (:mod:`tformer.models.conformer.subsampling`), so the
result's front end keeps its fresh initial weights, and :meth:`ConformerEncoder.encode_frames` is what equals
Hugging Face's layers. The encoder's last LayerNorm (``layer_norm``, after all layers, which the paper's
encoder does not have) and its positional convolution (``pos_conv_embed``, built but unused by the Conformer
encoder's forward) are not copied either.

A difference to know: Hugging Face zeroes padded frames once, before the first layer, but not inside the
convolution module. The first feed-forward module and attention already make them nonzero, so the first depthwise
convolution carries them into the real frames within half a kernel of the padding, and the next layer's
attention spreads the change to every real frame: its padded batch differs from the utterance alone. tformer
zeroes padded frames before every depthwise convolution (and keeps them out of BatchNorm's training statistics).
With the same weights, tformer on a padded batch equals Hugging Face on each utterance alone.

``transformers`` is imported by the caller, never by this module.
"""

from __future__ import annotations

import torch

from tformer.errors import TformerError
from tformer.interop.hf_config import activation, read_fields
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.model import ConformerEncoder

__all__ = ["config_from_hf_wav2vec2_conformer", "from_hf_wav2vec2_conformer_layers"]

_ACTIVATIONS = {"swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh"}
_POSITIONAL = {"relative": "relative", None: "none"}  # Hugging Face's position_embeddings_type -> ours

# ConformerConfig's field -> Wav2Vec2ConformerConfig's attribute, copied as they are.
_FIELDS = {
    "d_model": "hidden_size",
    "num_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
    "num_layers": "num_hidden_layers",
    "conv_kernel_size": "conv_depthwise_kernel_size",
    "dropout": "hidden_dropout",
    "attention_dropout": "attention_dropout",
}

# Our name inside one block (a prefix) -> Hugging Face's inside ``layers.{i}``.
_BLOCK = {
    "ffn1_residual.norm.": "ffn1_layer_norm.",
    "ffn1.w_1.": "ffn1.intermediate_dense.",
    "ffn1.w_2.": "ffn1.output_dense.",
    "self_attn_residual.norm.": "self_attn_layer_norm.",
    "self_attn.q_proj.": "self_attn.linear_q.",
    "self_attn.k_proj.": "self_attn.linear_k.",
    "self_attn.v_proj.": "self_attn.linear_v.",
    "self_attn.out_proj.": "self_attn.linear_out.",
    "self_attn.pos_proj.": "self_attn.linear_pos.",
    "self_attn.pos_bias_u": "self_attn.pos_bias_u",
    "self_attn.pos_bias_v": "self_attn.pos_bias_v",
    "conv_residual.norm.": "conv_module.layer_norm.",
    "conv.pointwise_in.": "conv_module.pointwise_conv1.",
    "conv.depthwise.": "conv_module.depthwise_conv.",
    "conv.batch_norm.": "conv_module.batch_norm.",
    "conv.pointwise_out.": "conv_module.pointwise_conv2.",
    "ffn2_residual.norm.": "ffn2_layer_norm.",
    "ffn2.w_1.": "ffn2.intermediate_dense.",
    "ffn2.w_2.": "ffn2.output_dense.",
    "final_norm.": "final_layer_norm.",
}
_HF_LAYER_EPS = 1e-5  # Hugging Face's layers use nn.LayerNorm's default eps (its layer_norm_eps is the last norm's)


def config_from_hf_wav2vec2_conformer(hf_config, n_mels: int = 80) -> ConformerConfig:
    """The :class:`ConformerConfig` of a ``transformers.Wav2Vec2ConformerConfig``'s encoder, with a front end for
    ``n_mels`` features.

    Raises:
        TformerError: a setting tformer's blocks do not have (rotary positions, an activation), in one line.
    """
    c = hf_config
    kind = getattr(c, "position_embeddings_type", None)
    if kind not in _POSITIONAL:
        raise TformerError(f"tformer's Conformer has relative or no positions, not {kind!r}")
    return ConformerConfig(
        **read_fields(c, _FIELDS, floats=("dropout", "attention_dropout")),
        n_mels=n_mels,
        activation=activation(c.hidden_act, _ACTIVATIONS, "Wav2Vec2Conformer"),
        positional=_POSITIONAL[kind],
        layer_norm_eps=_HF_LAYER_EPS,
    )


@torch.no_grad()
def from_hf_wav2vec2_conformer_layers(hf_encoder, n_mels: int = 80) -> ConformerEncoder:
    """A :class:`ConformerEncoder` whose blocks are copies of ``hf_encoder``'s layers.

    Args:
        hf_encoder: a ``transformers`` ``Wav2Vec2ConformerEncoder``, or a model that holds one as ``.encoder``
            (``Wav2Vec2ConformerModel``).
        n_mels: features per frame of the (freshly initialised) front end.

    Returns:
        The encoder, in ``hf_encoder``'s training mode. ``model.encode_frames(x, lengths)[0]``, then
        ``hf_encoder.layer_norm``, equals ``hf_encoder(x, attention_mask).last_hidden_state`` on real frames
        (on every frame without padding).

    Raises:
        TformerError: not a Conformer encoder, an unsupported setting, or a missing, unexpected or mis-shaped
            tensor (one line naming the first).
    """
    encoder = getattr(hf_encoder, "encoder", hf_encoder)
    cfg = getattr(encoder, "config", None)
    if getattr(cfg, "model_type", None) != "wav2vec2-conformer" or not hasattr(encoder, "layers"):
        raise TformerError(f"expected a transformers Wav2Vec2ConformerEncoder, got {type(hf_encoder).__name__}")
    model = ConformerEncoder(config_from_hf_wav2vec2_conformer(cfg, n_mels))
    hf = {k: v for k, v in encoder.state_dict().items() if k.startswith("layers.")}
    used = set()
    for name, tensor in model.state_dict().items():  # shares storage with the parameters
        if name.startswith("blocks."):
            used.add(_copy(hf, name, tensor))
    left = sorted(set(hf) - used)
    if left:
        raise TformerError(f"Wav2Vec2Conformer layers hold a tensor tformer does not know: {left[0]} "
                           f"({len(left)} in all)")
    return model.train(encoder.training)


def _copy(hf: dict[str, torch.Tensor], name: str, ours: torch.Tensor) -> str:
    """Copies Hugging Face's tensor for our ``blocks.{i}.<rest>`` into ``ours``; returns its name."""
    _, i, rest = name.split(".", 2)
    prefix = next((p for p in _BLOCK if rest.startswith(p)), None)
    if prefix is None:
        raise TformerError(f"no Wav2Vec2Conformer tensor maps to tformer's {name}")
    theirs = f"layers.{i}.{_BLOCK[prefix]}{rest[len(prefix):]}"
    if theirs not in hf:
        raise TformerError(f"Wav2Vec2Conformer state dict has no {theirs} (for tformer's {name})")
    if hf[theirs].shape != ours.shape:
        raise TformerError(f"shape mismatch for {theirs}: {tuple(hf[theirs].shape)} in the Wav2Vec2Conformer "
                           f"model, {tuple(ours.shape)} expected for tformer's {name}")
    ours.copy_(hf[theirs])
    return theirs
