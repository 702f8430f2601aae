"""Model families, one folder each, built from the parts in :mod:`tformer.nn`.

* :mod:`tformer.models.transformer`: the paper's encoder-decoder (§3) and its presets (T5 is a configuration).
* :mod:`tformer.models.cmlm`: the non-autoregressive conditional masked LM (Mask-Predict).
* :mod:`tformer.models.bert`: BERT-style encoder with masked-LM and classification heads.
* :mod:`tformer.models.gpt`: GPT-style causal language model.
* :mod:`tformer.models.vit`: the Vision Transformer.
"""
