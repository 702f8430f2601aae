"""Tokenization (BPE or unigram subwords, or whitespace-separated symbols) with the Hugging Face ``tokenizers``
library.

The paper encodes sentences with byte-pair encoding into a shared source-target vocabulary of about
37000 tokens (§5.1). :class:`Tokenizer` wraps one trained ``tokenizers.Tokenizer`` with the fixed
special ids every other module relies on:

    ``<pad>`` = 0 (PAD_ID), ``<s>`` = 1 (BOS_ID), ``</s>`` = 2 (EOS_ID), ``<unk>`` = 3 (UNK_ID)

A tokenizer made elsewhere (a Hugging Face ``tokenizer.json``: BERT's WordPiece, GPT-2's byte-level BPE, T5's
unigram) keeps its own ids: a :class:`Tokenizer` finds its special tokens by name (:data:`SPECIAL_TOKEN_NAMES`,
first name present wins) and carries their ids (``pad_id``, ``bos_id``, ``eos_id``, ``unk_id``), so nothing
downstream assumes 0-3. A vocabulary without a start token (T5, Marian) starts the decoder from padding, as those
models do: its ``bos_id`` is its ``pad_id``.

What happens to a text, in order:

1. Normalization: Unicode NFC; every run of Unicode whitespace (spaces, tabs, newlines, a lone ``\\r``,
   no-break spaces) becomes one space; leading and trailing whitespace is removed. Nothing else: case,
   accents, umlauts, ß and punctuation are kept as written.
2. Pre-tokenization: each space becomes the sentencepiece marker ``▁`` that starts the following
   word (Metaspace), then every digit and every punctuation character is split off on its own. Subwords
   therefore never cross a word boundary, never glue punctuation to a word, and numbers are spelled
   digit by digit (so ``1987`` and ``1988`` share all but one token).
3. The subword model (BPE merges or a unigram language model) splits each piece into vocabulary
   tokens. A character never seen in training becomes ``<unk>`` (BPE: one per character; unigram: one per
   run of such characters), control characters and scripts the training text lacks included. BPE
   training always includes every character of the training text, so training-text characters
   round-trip exactly.

Decoding joins the tokens and turns each ``▁`` back into a space. Consequently
``decode(encode(text)) == text`` for any text made of training characters that is already normalized
(NFC, single spaces between words, no leading or trailing space). A literal ``▁`` in the input is
read as a space. Special-token strings written in the input (such as ``"<s>"``) are encoded as
ordinary text, never as control ids.

Any Python ``str`` is encoded except one holding a lone surrogate (``"\\ud800"``, which is no Unicode
text): that raises :class:`TokenizerError`.

``encode`` adds no BOS/EOS: the model's input layout (source + EOS, BOS + target) is built by
:func:`tformer.data.batching.collate`.

The kinds (:data:`TOKENIZER_KINDS`, the values of ``data.tokenizer``): ``bpe`` and ``unigram`` are the subword
models above. ``symbols`` is for text that is already a sequence of symbols written with spaces between them,
such as the characters of a word (``h e l l o``) or its phonemes (``HH AH0 L OW1``) in grapheme-to-phoneme
conversion: after the same normalization, each whitespace-separated symbol is one token (a word-level model,
no subwords, no digit or punctuation splitting), and decoding joins the symbols with single spaces, so
``decode(encode(text)) == text`` for normalized text of training symbols. The vocabulary holds the training
text's ``vocab_size - 4`` most frequent symbols (ties in symbol order); any other symbol is ``<unk>``. A
``symbols`` tokenizer is saved and loaded like the others (``tokenizer.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tokenizers
import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

from tformer.data.special_tokens import SPECIAL_TOKEN_NAMES, TokenizerError, find_special_ids
from tformer.io.files import atomic_write_text
from tformer.registry import Registry

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_NAMES",
    "TOKENIZER_KINDS",
    "UNK_ID",
    "Tokenizer",
    "TokenizerKind",
    "TokenizerError",
]

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # index in this tuple == id
WORD_MARKER = "▁"  # U+2581, marks the start of a word (sentencepiece convention)

SubwordModel = Literal["bpe", "unigram", "symbols"]  # the names in TOKENIZER_KINDS


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Metaspace must come first: splitting punctuation before it would give "." its own "▁".
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=WORD_MARKER, prepend_scheme="always", split=True),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(behavior="isolated"),
        ]
    )


@dataclass(frozen=True)
class TokenizerKind:
    """How one kind of tokenizer is put together and trained (an entry of :data:`TOKENIZER_KINDS`).

    Attributes:
        model: makes the untrained ``tokenizers`` model (BPE, Unigram, WordLevel).
        pre_tokenizer: makes the pre-tokenizer that cuts normalized text into the pieces the model sees.
        decoder: makes the decoder that turns tokens back into text; None = the library's default, which joins
            the tokens with single spaces.
        trainer: ``(vocab_size, min_frequency, alphabet) -> trainer``; ``alphabet`` is every character of the
            normalized training text (word marker included).
        needs_alphabet: the vocabulary must hold every training character (subwords are spelled from them), so
            a ``vocab_size`` too small for them is refused.
    """

    model: Callable[[], models.Model]
    pre_tokenizer: Callable[[], pre_tokenizers.PreTokenizer]
    decoder: Callable[[], decoders.Decoder] | None
    trainer: Callable[[int, int, list[str]], trainers.Trainer]
    needs_alphabet: bool = True


TOKENIZER_KINDS: Registry[TokenizerKind] = Registry("data.tokenizer")
"""The tokenizer kinds by name: ``bpe`` (the paper's), ``unigram`` (sentencepiece's), ``symbols`` (see the module
docstring)."""

TOKENIZER_KINDS.add("bpe", TokenizerKind(
    model=lambda: models.BPE(unk_token=SPECIAL_TOKENS[UNK_ID]),
    pre_tokenizer=_pre_tokenizer,
    decoder=lambda: decoders.Metaspace(replacement=WORD_MARKER, prepend_scheme="always", split=True),
    trainer=lambda vocab_size, min_frequency, alphabet: trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet, show_progress=False),
))
TOKENIZER_KINDS.add("unigram", TokenizerKind(
    model=models.Unigram,
    pre_tokenizer=_pre_tokenizer,
    decoder=TOKENIZER_KINDS["bpe"].decoder,
    trainer=lambda vocab_size, min_frequency, alphabet: trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token=SPECIAL_TOKENS[UNK_ID],
        initial_alphabet=alphabet, show_progress=False),
))
TOKENIZER_KINDS.add("symbols", TokenizerKind(
    model=lambda: models.WordLevel(unk_token=SPECIAL_TOKENS[UNK_ID]),
    pre_tokenizer=pre_tokenizers.WhitespaceSplit,
    decoder=None,  # the library joins the symbols with single spaces
    trainer=lambda vocab_size, min_frequency, alphabet: trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=0, special_tokens=list(SPECIAL_TOKENS), show_progress=False),
    needs_alphabet=False,
))


class Tokenizer:
    """A subword tokenizer (``tokenizers`` library) and the ids of its special tokens.

    Build one with :meth:`train` (ids 0-3 are ``<pad> <s> </s> <unk>``) or :meth:`load`; the constructor wraps an
    existing ``tokenizers.Tokenizer``, such as a Hugging Face ``tokenizer.json``, and finds its special tokens by
    name (:data:`SPECIAL_TOKEN_NAMES`).

    Args:
        backend: A trained ``tokenizers.Tokenizer``.

    Raises:
        TokenizerError: If it has no padding, end-of-sentence or unknown token.
    """

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        ids = find_special_ids(backend.token_to_id, "the tokenizer")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids["pad"], ids["bos"], ids["eos"], ids["unk"]
        backend.encode_special_tokens = True  # "<s>" typed in the text is text; not stored in the json
        self._backend = backend

    # ----------------------------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model: SubwordModel = "bpe",
        min_frequency: int = 2,
    ) -> Tokenizer:
        """Trains a new tokenizer on ``texts``.

        Args:
            texts: Training sentences, one per item. Read once into memory.
            vocab_size: The largest vocabulary size, special tokens included. It must hold at least
                the special tokens, the word marker and every distinct character of the training
                text. BPE's result is smaller when the text has fewer distinct subwords; unigram
                training can end a few tokens off ``vocab_size`` on tiny corpora.
            model: the kind (:data:`TOKENIZER_KINDS`): ``"bpe"`` (byte-pair encoding, as in the paper),
                ``"unigram"`` (sentencepiece's unigram language model) or ``"symbols"`` (one token per
                whitespace-separated symbol; ``vocab_size`` then caps the symbols kept, most frequent first).
            min_frequency: BPE only: a pair seen fewer times than this is never merged.

        Returns:
            The trained tokenizer.

        Raises:
            TokenizerError: If ``model`` is unknown or ``vocab_size`` cannot hold the special tokens and
                the characters of the training text.
        """
        if model not in TOKENIZER_KINDS:
            raise TokenizerError(f"unknown subword model {model!r}; expected one of {tuple(TOKENIZER_KINDS)}")
        kind = TOKENIZER_KINDS[model]
        backend = tokenizers.Tokenizer(kind.model())
        backend.normalizer = _normalizer()
        backend.pre_tokenizer = kind.pre_tokenizer()
        if kind.decoder is not None:
            backend.decoder = kind.decoder()

        texts = list(texts)
        alphabet = _alphabet(backend.normalizer, texts) if kind.needs_alphabet else []
        if vocab_size < len(SPECIAL_TOKENS) + max(len(alphabet), 1):
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small: it must hold {len(SPECIAL_TOKENS)} special tokens "
                + (f"and the {len(alphabet)} distinct characters of the training text (word marker included)"
                   if kind.needs_alphabet else "and at least one symbol")
            )
        backend.train_from_iterator(texts, kind.trainer(vocab_size, min_frequency, alphabet), length=len(texts))
        return cls(backend)

    # ----------------------------------------------------------------------------- text <-> ids

    def encode(self, text: str) -> list[int]:
        """Returns the token ids of ``text``, without BOS or EOS.

        Raises:
            TokenizerError: If ``text`` holds a lone surrogate.
        """
        return self._encodings([text])[0].ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Returns the token ids of each text (encoded in parallel by the library), without BOS or EOS."""
        return [enc.ids for enc in self._encodings(list(texts))]

    def _encodings(self, texts: list[str]) -> list[tokenizers.Encoding]:
        """The library's encodings of ``texts``; a lone surrogate is a TokenizerError, not its TypeError."""
        try:
            if len(texts) == 1:
                return [self._backend.encode(texts[0], add_special_tokens=False)]
            return self._backend.encode_batch(texts, add_special_tokens=False)
        except TypeError:  # the library takes only str, and only valid Unicode
            for n, text in enumerate(texts, start=1):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as err:
                    where = f"text {n} of {len(texts)}" if len(texts) > 1 else "the text"
                    raise TokenizerError(f"{where} holds a lone surrogate ({text[err.start]!r}) at character "
                                         f"{err.start + 1}: not Unicode text") from None
                except AttributeError:  # not a str: a programming error, the library's TypeError says so
                    break
            raise

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Turns ids back into text: pad and BOS are dropped and decoding stops at the first EOS.

        Args:
            ids: A list of ids or a 1-D integer tensor, such as one row of a model's output.

        Returns:
            The text. Unknown characters appear as ``<unk>``.

        Raises:
            ValueError: If a tensor is not 1-D or an id is outside the vocabulary.
        """
        return self._backend.decode(self._clean_ids(ids), skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]] | torch.Tensor) -> list[str]:
        """Decodes each row of a list of id lists or of a 2-D tensor (B, L), like :meth:`decode`."""
        if isinstance(batch, torch.Tensor) and batch.dim() != 2:
            raise ValueError(f"decode_batch expects a 2-D tensor (B, L), got shape {tuple(batch.shape)}")
        rows = [self._clean_ids(row) for row in batch]
        return self._backend.decode_batch(rows, skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """Returns the subword strings of ``text`` (``▁`` starts a word), e.g. to label attention maps."""
        return self._encodings([text])[0].tokens

    def id_to_token(self, i: int) -> str:
        """Returns the subword string of id ``i``.

        Raises:
            ValueError: If ``i`` is outside the vocabulary.
        """
        token = self._backend.id_to_token(i) if 0 <= i < self.vocab_size else None
        if token is None:
            raise ValueError(f"token id {i} is outside the vocabulary of size {self.vocab_size}")
        return token

    def _clean_ids(self, ids: Sequence[int] | torch.Tensor) -> list[int]:
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D tensor, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        kept: list[int] = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary of size {self.vocab_size}")
            kept.append(int(i))
        return kept

    # ------------------------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        """The number of ids, special tokens included (the model's embedding size)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    # The special ids (instance attributes set by the constructor): pad_id, bos_id (the decoder's start token),
    # eos_id, unk_id; 0-3 for a tokenizer tformer trained.

    def __repr__(self) -> str:
        kind = type(self._backend.model).__name__
        return f"Tokenizer({kind}, vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """Returns the complete tokenizer as the JSON text of a ``tokenizer.json`` file."""
        return self._backend.to_str()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the tokenizer to ``path`` (a ``tokenizer.json`` file) atomically, creating its directory."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Rebuilds a tokenizer from the text of :meth:`to_json` (e.g. one stored in a checkpoint).

        Raises:
            TokenizerError: If the text is not a valid tokenizer or lacks a padding, end or unknown token.
        """
        try:
            backend = tokenizers.Tokenizer.from_str(text)
        except Exception as err:  # the library raises a plain Exception
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TokenizerError(f"not a valid tokenizer: {reason}") from None
        return cls(backend)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Reads a tokenizer written by :meth:`save`.

        Raises:
            TokenizerError: If the file is missing, is not a valid tokenizer file, or lacks a special token; the
                message is one line naming the file.
        """
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, TokenizerError) as err:
            raise TokenizerError(f"cannot load tokenizer file {path}: {err}") from None


def _alphabet(normalizer: normalizers.Normalizer, texts: Sequence[str]) -> list[str]:
    """Every character of the normalized texts, with spaces shown as the word marker."""
    chars: set[str] = set()
    for text in texts:
        chars.update(normalizer.normalize_str(text))
    chars.discard(" ")
    chars.add(WORD_MARKER)
    return sorted(chars)
