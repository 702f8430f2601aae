"""The vocabularies of a translation model: one tokenizer shared by both sides, or one per side.

:class:`Vocabularies` trains, saves and loads the pair. On disk a run directory holds exactly one of the
layouts of :data:`LAYOUTS`: ``tokenizer.json`` (shared), ``tokenizer.src.json`` + ``tokenizer.tgt.json`` (separate),
or Marian's ``source.spm`` + ``target.spm`` + ``vocab.json`` (+ ``target_vocab.json`` when the vocabularies are
separate; see :mod:`tformer.data.sentencepiece_vocab`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tformer.data.sentencepiece_vocab import SentencePieceTokenizer, read_vocab
from tformer.data.tokenizer import SubwordModel, Tokenizer, TokenizerError
from tformer.io.files import atomic_write_bytes
from tformer.registry import Registry

__all__ = ["LAYOUTS", "Layout", "Vocabularies"]


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
        """Writes the files of the layout that holds these tokenizers (:data:`LAYOUTS`).

        Tokenizer files of another layout left in ``directory`` by an earlier save are removed, so that :meth:`load`
        always finds exactly one layout.
        """
        directory = Path(directory)
        name = next((n for n, layout in LAYOUTS.items() if layout.holds(self)), None)
        if name is None:
            raise TokenizerError(f"no vocabulary layout holds {self!r}")
        LAYOUTS[name].save(self, directory)
        for other, layout in LAYOUTS.items():
            for file in layout.files if other != name else ():
                if file not in LAYOUTS[name].files:
                    (directory / file).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Vocabularies:
        """Reads the vocabularies written by :meth:`save` (or a Marian folder's), detecting the layout.

        Raises:
            TokenizerError: If the directory holds no layout, two, or an unreadable file.
        """
        directory = Path(directory)
        found = [name for name, layout in LAYOUTS.items() if layout.found(directory)]
        if len(found) > 1:
            a, b = (" + ".join(f for f in LAYOUTS[n].files if (directory / f).is_file()) for n in found[:2])
            raise TokenizerError(f"{directory} holds both {a} and {b}; keep one layout")
        if not found:
            raise TokenizerError(f"no tokenizer found in {directory}: expected "
                                 + " or ".join(layout.describe for layout in LAYOUTS.values()))
        return LAYOUTS[found[0]].load(directory)

    def __repr__(self) -> str:
        if self.shared:
            return f"Vocabularies(shared={self.src!r})"
        return f"Vocabularies(src={self.src!r}, tgt={self.tgt!r})"


@dataclass(frozen=True)
class Layout:
    """How one kind of vocabulary pair lies in a folder (an entry of :data:`LAYOUTS`).

    Attributes:
        files: the file names of the layout (the first marks it); another layout's save removes them.
        describe: the files, as an error message names them.
        holds: whether a :class:`Vocabularies` is saved in this layout.
        save: writes it into a folder.
        load: reads it from a folder where :attr:`files`' first name exists.
    """

    files: tuple[str, ...]
    describe: str
    holds: Callable[[Vocabularies], bool]
    save: Callable[[Vocabularies, Path], None]
    load: Callable[[Path], Vocabularies]

    def found(self, directory: Path) -> bool:
        """Whether ``directory`` holds this layout's first (marking) file."""
        return (directory / self.files[0]).is_file()


def _save_separate(vocabs: Vocabularies, directory: Path) -> None:
    vocabs.src.save(directory / Vocabularies.SRC_FILE)
    vocabs.tgt.save(directory / Vocabularies.TGT_FILE)


def _load_separate(directory: Path) -> Vocabularies:
    missing = [n for n in (Vocabularies.SRC_FILE, Vocabularies.TGT_FILE) if not (directory / n).is_file()]
    if missing:
        raise TokenizerError(f"{directory} has one of {Vocabularies.SRC_FILE} + {Vocabularies.TGT_FILE} but no "
                             f"{missing[0]}")
    return Vocabularies(Tokenizer.load(directory / Vocabularies.SRC_FILE),
                        Tokenizer.load(directory / Vocabularies.TGT_FILE))


SOURCE_SPM, TARGET_SPM, VOCAB, TARGET_VOCAB = "source.spm", "target.spm", "vocab.json", "target_vocab.json"


def _save_sentencepiece(vocabs: Vocabularies, directory: Path) -> None:
    vocabs.src.save(directory / SOURCE_SPM, directory / VOCAB)
    if vocabs.tgt.vocab == vocabs.src.vocab:
        atomic_write_bytes(directory / TARGET_SPM, vocabs.tgt.model_bytes)
        (directory / TARGET_VOCAB).unlink(missing_ok=True)
    else:
        vocabs.tgt.save(directory / TARGET_SPM, directory / TARGET_VOCAB)


def _load_sentencepiece(directory: Path) -> Vocabularies:
    """Marian's files; the target side joins output pieces with the source model when the vocabulary is shared
    (as ``transformers.MarianTokenizer`` does)."""
    models = {}
    for name in (SOURCE_SPM, TARGET_SPM):
        try:
            models[name] = (directory / name).read_bytes()
        except OSError as err:
            raise TokenizerError(f"cannot read {directory / name}: {err.strerror or err}") from None
    vocab = read_vocab(directory / VOCAB)
    separate = (directory / TARGET_VOCAB).is_file()
    tgt_vocab = read_vocab(directory / TARGET_VOCAB) if separate else vocab
    src = SentencePieceTokenizer(models[SOURCE_SPM], vocab)
    tgt = SentencePieceTokenizer(models[TARGET_SPM], tgt_vocab,
                                 decoder_model=models[TARGET_SPM] if separate else models[SOURCE_SPM])
    return Vocabularies(src, tgt)


def _tformer_pair(vocabs: Vocabularies) -> bool:
    return isinstance(vocabs.src, Tokenizer) and isinstance(vocabs.tgt, Tokenizer)


LAYOUTS: Registry[Layout] = Registry("vocabulary layout")
"""The folder layouts :meth:`Vocabularies.load` recognises and :meth:`Vocabularies.save` writes."""
LAYOUTS.add("shared", Layout(
    files=(Vocabularies.SHARED_FILE,), describe=Vocabularies.SHARED_FILE,
    holds=lambda v: _tformer_pair(v) and v.shared,
    save=lambda v, d: v.src.save(d / Vocabularies.SHARED_FILE),
    load=lambda d: Vocabularies(*(2 * [Tokenizer.load(d / Vocabularies.SHARED_FILE)])),
))
LAYOUTS.add("separate", Layout(
    files=(Vocabularies.SRC_FILE, Vocabularies.TGT_FILE), describe=f"{Vocabularies.SRC_FILE} + {Vocabularies.TGT_FILE}",
    holds=lambda v: _tformer_pair(v) and not v.shared, save=_save_separate, load=_load_separate,
))
LAYOUTS.add("sentencepiece", Layout(
    files=(SOURCE_SPM, TARGET_SPM, VOCAB, TARGET_VOCAB), describe=f"{SOURCE_SPM} + {TARGET_SPM} + {VOCAB}",
    holds=lambda v: isinstance(v.src, SentencePieceTokenizer) and isinstance(v.tgt, SentencePieceTokenizer),
    save=_save_sentencepiece, load=_load_sentencepiece,
))
