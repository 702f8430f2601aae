"""The Transformer's descendants, built from the same layers (composition, not flags).

* :mod:`tformer.variants.encoder_only`: BERT-style encoder with masked-LM and classification heads.
* :mod:`tformer.variants.decoder_only`: GPT-style causal language model.
* :mod:`tformer.variants.vit`: the Vision Transformer.

The text-to-text model (T5-style) is a configuration of :class:`tformer.Transformer` itself.
"""
