"""The special tokens of a vocabulary, found by name: which ids pad, start, end and unknown have.

tformer's own tokenizers put ``<pad> <s> </s> <unk>`` at ids 0-3; a tokenizer made elsewhere keeps its ids (Marian:
``</s>`` 0, ``<unk>`` 1, ``<pad>`` last; BERT's ``[PAD]`` 0 ... ``[UNK]`` 100; GPT-2's one ``<|endoftext|>``). Both
kinds of tokenizer (:class:`tformer.data.tokenizer.Tokenizer`, the SentencePiece vocabularies of
:mod:`tformer.data.sentencepiece_vocab`) read their ids with :func:`find_special_ids`. :class:`TokenizerError`, the
error of every tokenizer, lives here with the first check a tokenizer makes.
"""

from __future__ import annotations

from collections.abc import Callable

from tformer.errors import TformerError

__all__ = ["SPECIAL_TOKEN_NAMES", "TokenizerError", "find_special_ids"]


class TokenizerError(TformerError):
    """A tokenizer file is missing or unreadable, or a tokenizer cannot be trained as asked."""


SPECIAL_TOKEN_NAMES: dict[str, tuple[str, ...]] = {
    "pad": ("<pad>", "[PAD]", "<|endoftext|>"),
    "bos": ("<s>", "[CLS]", "<|endoftext|>"),
    "eos": ("</s>", "[SEP]", "<|endoftext|>"),
    "unk": ("<unk>", "[UNK]", "<|endoftext|>"),
}
"""How a tokenizer's special tokens are found: role -> the names that may play it, in order (tformer and
sentencepiece/Marian/T5, then BERT's WordPiece, then GPT-2's one ``<|endoftext|>``). Roles ``pad``, ``eos`` and
``unk`` must be found; a vocabulary with no ``bos`` starts the decoder from ``pad`` (T5, Marian)."""


def find_special_ids(token_to_id: Callable[[str], int | None], where: str) -> dict[str, int]:
    """The id of each role of :data:`SPECIAL_TOKEN_NAMES` in a vocabulary (``token_to_id``: None when absent).

    Raises:
        TokenizerError: naming ``where`` when pad, eos or unk is missing.
    """
    ids: dict[str, int] = {}
    for role, names in SPECIAL_TOKEN_NAMES.items():
        found = [i for i in map(token_to_id, names) if i is not None]
        if found:
            ids[role] = found[0]
        elif role != "bos":
            raise TokenizerError(f"{where} has no {role} token (looked for {', '.join(names)})")
    ids.setdefault("bos", ids["pad"])
    return ids
