"""T5 (Raffel et al., 2020): the paper's encoder-decoder with RMSNorm, a relative position bias and bias-free
projections; see :mod:`tformer.models.t5.presets` for which part each of its choices selects."""

from tformer.models.t5.presets import T5_SMALL_SIZE, t5_parts, t5_small_settings

__all__ = ["T5_SMALL_SIZE", "t5_parts", "t5_small_settings"]
