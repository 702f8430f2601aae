"""Text in, text out: a model, its tokenizers and the decoding engine together.

    >>> translator = Translator.from_pretrained("runs/demo")
    >>> translator.translate(["three hundred twenty-one"], beam_size=4)
    ['dreihunderteinundzwanzig']
    >>> translator.translate(["three hundred twenty-one"], prefixes=["drei"])     # the output starts so
    >>> Translator.ensemble([translator, other]).translate([...])                  # the mean of two models
    >>> translator.attention("three hundred twenty-one")                           # every attention weight

``core``: loading, batching and decoding; ``inspection``: the attention weights, alignments and alignment rates.
"""

from tformer.translator.core import MODEL_SUBDIR, Translator, load_model, same_vocabularies
from tformer.translator.inspection import SentenceAttention

__all__ = ["MODEL_SUBDIR", "SentenceAttention", "Translator", "load_model", "same_vocabularies"]
