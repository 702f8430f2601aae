"""Model families, one folder each, built from the parts in :mod:`tformer.nn`.

* :mod:`tformer.models.transformer`: the paper's encoder-decoder (§3), its presets and its builders.
* :mod:`tformer.models.t5`: T5's choice of parts for the paper's encoder-decoder (a preset).
* :mod:`tformer.models.cmlm`: the non-autoregressive conditional masked LM (Mask-Predict).
* :mod:`tformer.models.bert`: BERT-style encoder with masked-LM and classification heads.
* :mod:`tformer.models.gpt`: GPT-style causal language model.
* :mod:`tformer.models.vit`: the Vision Transformer.
* :mod:`tformer.models.swin`: the Swin Transformer (shifted windows, a hierarchy of stages).
* :mod:`tformer.models.conformer`: the Conformer encoder for speech (convolution-augmented).

Each folder holds ``config.py`` (a :class:`tformer.config.Config`) and ``model.py`` (classes with
:class:`tformer.io.pretrained.Pretrained`'s ``save_pretrained`` / ``from_pretrained``).
:mod:`tformer.models.registry` resolves a saved folder's architecture: ``load_pretrained(directory)``.
"""

from typing import Any

_REGISTRY = ("ARCHITECTURES", "load_pretrained", "model_class", "model_from_config", "resolve")

__all__ = list(_REGISTRY)


def __getattr__(name: str) -> Any:
    # The registry imports every family: load it on first use, not with each family's config.
    if name in _REGISTRY:
        from tformer.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tformer.models' has no attribute {name!r}")
