"""The data layer: tokenization, reading corpora, token-budget batching, and the demo task.

* :mod:`tformer.data.tokenizer`: subword (or space-separated symbol) tokenizers with fixed special ids (pad 0,
  BOS 1, EOS 2, unk 3); their kinds by name in ``TOKENIZER_KINDS``.
* :mod:`tformer.data.vocabularies`: a translation model's tokenizers, shared or one per side, and their files.
* :mod:`tformer.data.corpus`: parallel text from aligned files, TSV or JSON Lines (whole or streamed); pair filtering.
* :mod:`tformer.data.binarized`: tokenized pairs on disk, memory-mapped (a WMT-sized corpus tokenized once), cached by
  fingerprint in a folder of :mod:`tformer.data.cache`.
* :mod:`tformer.data.batching`: batches by token budget, and padding into the model's tensors.
* :mod:`tformer.data.synthetic`: English -> German number words, the task of ``tformer demo``.
* :mod:`tformer.data.cmudict`: the CMU Pronouncing Dictionary split by word for grapheme to phoneme (``./dev data
  cmudict``; imported by name, not here).
"""

from tformer.data.batching import Batch, TokenBatchSampler, collate
from tformer.data.binarized import BinarizedPairs, write_pairs
from tformer.data.corpus import (
    CorpusError,
    FilterReport,
    filter_pairs,
    iter_jsonl,
    iter_parallel,
    iter_tsv,
    read_jsonl,
    read_lines,
    read_parallel,
    read_tsv,
)
from tformer.data.synthetic import english_words, german_words, make_number_task, write_parallel
from tformer.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    UNK_ID,
    Tokenizer,
    TokenizerError,
)
from tformer.data.vocabularies import Vocabularies

# One line per module, in the order of the docstring.
__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "SPECIAL_TOKENS", "TOKENIZER_KINDS", "UNK_ID", "Tokenizer", "TokenizerError",
    "Vocabularies",
    "CorpusError", "FilterReport", "filter_pairs", "iter_jsonl", "iter_parallel", "iter_tsv", "read_jsonl",
    "read_lines", "read_parallel", "read_tsv",
    "BinarizedPairs", "write_pairs",
    "Batch", "TokenBatchSampler", "collate",
    "english_words", "german_words", "make_number_task", "write_parallel",
]
