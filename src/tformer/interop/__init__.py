"""Weights in from (and out to) other toolkits."""

from tformer.interop.marian import config_from_marian, from_hf_marian

__all__ = ["config_from_marian", "from_hf_marian"]
