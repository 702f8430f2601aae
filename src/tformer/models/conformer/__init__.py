"""The Conformer (Gulati et al., 2020): convolution-augmented Transformer encoder for speech.

* :mod:`.config`: :class:`ConformerConfig`, frozen and validated, with the paper's S/M/L presets.
* :mod:`.subsampling`: the convolutional front end (4x fewer frames) and its lengths formula; a linear one (1x).
* :mod:`.positional`: relative (the paper), no positions (torchaudio) or absolute sinusoids, a registry.
* :mod:`.blocks`: the convolution module and the Conformer block (Eq. 1); the plain Transformer block (a baseline).
* :mod:`.model`: :class:`ConformerEncoder`, features and lengths -> frames and lengths.
* :mod:`.classifier`: :class:`ConformerClassifier`, the encoder, a mean over real frames and a linear head.
* :mod:`.decoder`: :class:`SpeechDecoder`, the paper's Transformer decoder over encoder frames (from nn's parts).
* :mod:`.ctc`: speech recognition with a CTC head, :class:`ConformerCTC`, and :func:`ctc_loss`.
* :mod:`.asr`: speech recognition with the decoder, :class:`ConformerSeq2Seq` (optionally joint CTC/attention), and
  :class:`SpeechBatch`, utterances as the decoding engines' source.
"""

from tformer.models.conformer.asr import ASRLoss, ConformerSeq2Seq, Seq2SeqConfig, SpeechBatch
from tformer.models.conformer.blocks import (
    CONFORMER_BLOCKS,
    ConformerBlock,
    ConvolutionModule,
    MaskedBatchNorm1d,
    TransformerBlock,
)
from tformer.models.conformer.classifier import ConformerClassifier
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.ctc import ConformerCTC, CTCConfig, ctc_loss
from tformer.models.conformer.decoder import SpeechDecoder
from tformer.models.conformer.model import ConformerEncoder
from tformer.models.conformer.positional import CONFORMER_POSITIONAL, ConformerPositional
from tformer.models.conformer.subsampling import FRONT_ENDS, ConvSubsampling, LinearFrontEnd, subsampled_lengths

__all__ = ["ASRLoss", "CONFORMER_BLOCKS", "CONFORMER_POSITIONAL", "CTCConfig", "FRONT_ENDS", "ConformerBlock",
           "ConformerCTC", "ConformerClassifier", "ConformerConfig", "ConformerEncoder", "ConformerPositional",
           "ConformerSeq2Seq", "ConvSubsampling", "ConvolutionModule", "LinearFrontEnd", "MaskedBatchNorm1d",
           "Seq2SeqConfig", "SpeechBatch", "SpeechDecoder", "TransformerBlock", "ctc_loss", "subsampled_lengths"]
