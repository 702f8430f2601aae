"""BERT-style encoder-only models (Devlin et al., 2019)."""
