"""The Conformer (Gulati et al., 2020): convolution-augmented Transformer encoder for speech.

* :mod:`.config`: :class:`ConformerConfig`, frozen and validated, with the paper's S/M/L presets.
* :mod:`.subsampling`: the convolutional front end (4x fewer frames) and its lengths formula; a linear one (1x).
* :mod:`.positional`: relative (the paper), no positions (torchaudio) or absolute sinusoids, a registry.
* :mod:`.blocks`: the convolution module and the Conformer block (Eq. 1); the plain Transformer block (a baseline).
* :mod:`.model`: :class:`ConformerEncoder`, features and lengths -> frames and lengths.
* :mod:`.classifier`: :class:`ConformerClassifier`, the encoder, a mean over real frames and a linear head.
"""

from tformer.models.conformer.blocks import (
    CONFORMER_BLOCKS,
    ConformerBlock,
    ConvolutionModule,
    MaskedBatchNorm1d,
    TransformerBlock,
)
from tformer.models.conformer.classifier import ConformerClassifier
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.model import ConformerEncoder
from tformer.models.conformer.positional import CONFORMER_POSITIONAL, ConformerPositional
from tformer.models.conformer.subsampling import FRONT_ENDS, ConvSubsampling, LinearFrontEnd, subsampled_lengths

__all__ = ["CONFORMER_BLOCKS", "CONFORMER_POSITIONAL", "FRONT_ENDS", "ConformerBlock", "ConformerClassifier",
           "ConformerConfig", "ConformerEncoder", "ConformerPositional", "ConvSubsampling", "ConvolutionModule",
           "LinearFrontEnd", "MaskedBatchNorm1d", "TransformerBlock", "subsampled_lengths"]
