"""GPT-style decoder-only language models (Radford et al., 2018, 2019)."""

from tformer.models.gpt.config import DecoderOnlyConfig
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyCache, decoder_only_block, perplexity

__all__ = ["DecoderOnly", "DecoderOnlyCache", "DecoderOnlyConfig", "decoder_only_block", "perplexity"]
