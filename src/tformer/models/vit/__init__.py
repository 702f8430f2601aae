"""The Vision Transformer (Dosovitskiy et al., 2021): its configuration (``config``) and models (``model``)."""

from tformer.models.vit.config import VisionConfig
from tformer.models.vit.model import (
    PatchEmbedding,
    VisionClassifier,
    VisionTransformer,
    attention_rollout,
    cls_attention_maps,
)

__all__ = ["PatchEmbedding", "VisionClassifier", "VisionConfig", "VisionTransformer", "attention_rollout",
           "cls_attention_maps"]
