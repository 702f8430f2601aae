"""The vocabularies of a translation model: one tokenizer shared by both sides, or one per side.

:class:`Vocabularies` trains, saves and loads the pair. On disk a run directory holds exactly one of two
layouts: ``tokenizer.json`` (shared) or ``tokenizer.src.json`` + ``tokenizer.tgt.json`` (separate).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tformer.data.tokenizer import SubwordModel, Tokenizer, TokenizerError

__all__ = ["Vocabularies"]


class Vocabularies:
    """The source and target tokenizers of a translation model, shared (one object) or separate.

    The paper shares one BPE vocabulary between English and German (§5.1) so that the two embedding
    matrices and the output projection can share weights (§3.4); separate vocabularies suit language
    pairs with different scripts.

    Args:
        src: The source-language tokenizer.
        tgt: The target-language tokenizer; pass the same object as ``src`` for a shared vocabulary.
    """

    SHARED_FILE = "tokenizer.json"
    SRC_FILE = "tokenizer.src.json"
    TGT_FILE = "tokenizer.tgt.json"

    def __init__(self, src: Tokenizer, tgt: Tokenizer) -> None:
        self.src = src
        self.tgt = tgt

    @property
    def shared(self) -> bool:
        """True when source and target use the same tokenizer object."""
        return self.src is self.tgt

    @classmethod
    def train(
        cls,
        src_texts: Iterable[str],
        tgt_texts: Iterable[str],
        vocab_size: int,
        *,
        shared: bool = True,
        model: SubwordModel = "bpe",
        min_frequency: int = 2,
    ) -> Vocabularies:
        """Trains the tokenizers: one on both sides' text when ``shared``, else one per side.

        Args:
            src_texts: Source-side training sentences.
            tgt_texts: Target-side training sentences.
            vocab_size: The vocabulary size of each tokenizer (see :meth:`Tokenizer.train`).
            shared: Train one tokenizer on the union of both sides.
            model: ``"bpe"`` or ``"unigram"``.
            min_frequency: BPE only: the minimum count of a pair to be merged.

        Returns:
            The trained vocabularies.
        """
        if shared:
            both = [*src_texts, *tgt_texts]
            tok = Tokenizer.train(both, vocab_size, model=model, min_frequency=min_frequency)
            return cls(tok, tok)
        src = Tokenizer.train(src_texts, vocab_size, model=model, min_frequency=min_frequency)
        tgt = Tokenizer.train(tgt_texts, vocab_size, model=model, min_frequency=min_frequency)
        return cls(src, tgt)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``tokenizer.json`` (shared) or ``tokenizer.src.json`` + ``tokenizer.tgt.json``.

        Tokenizer files of the other layout left in ``directory`` by an earlier save are removed, so
        that :meth:`load` always finds exactly one layout.
        """
        directory = Path(directory)
        if self.shared:
            self.src.save(directory / self.SHARED_FILE)
            stale = [self.SRC_FILE, self.TGT_FILE]
        else:
            self.src.save(directory / self.SRC_FILE)
            self.tgt.save(directory / self.TGT_FILE)
            stale = [self.SHARED_FILE]
        for name in stale:
            (directory / name).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Vocabularies:
        """Reads the vocabularies written by :meth:`save`, detecting shared or separate.

        Raises:
            TokenizerError: If the directory holds neither layout, both, or an unreadable file.
        """
        directory = Path(directory)
        has_shared = (directory / cls.SHARED_FILE).is_file()
        has_separate = (directory / cls.SRC_FILE).is_file() or (directory / cls.TGT_FILE).is_file()
        if has_shared and has_separate:
            raise TokenizerError(
                f"{directory} holds both {cls.SHARED_FILE} and {cls.SRC_FILE}/{cls.TGT_FILE}; keep one layout"
            )
        if has_shared:
            tok = Tokenizer.load(directory / cls.SHARED_FILE)
            return cls(tok, tok)
        if has_separate:
            return cls(Tokenizer.load(directory / cls.SRC_FILE), Tokenizer.load(directory / cls.TGT_FILE))
        raise TokenizerError(
            f"no tokenizer found in {directory}: expected {cls.SHARED_FILE} or {cls.SRC_FILE} + {cls.TGT_FILE}"
        )

    def __repr__(self) -> str:
        if self.shared:
            return f"Vocabularies(shared={self.src!r})"
        return f"Vocabularies(src={self.src!r}, tgt={self.tgt!r})"
