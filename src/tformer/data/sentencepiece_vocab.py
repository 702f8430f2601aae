"""SentencePiece models with a separate piece -> id vocabulary: the tokenizers of Marian (OPUS-MT) checkpoints.

A Marian folder holds ``source.spm`` and ``target.spm`` (one SentencePiece model per language) and ``vocab.json``
(piece -> id, shared by both sides; ``target_vocab.json`` too when the vocabularies are separate). The ids are the
vocabulary's, not the SentencePiece models': ``</s>`` is 0, ``<unk>`` 1 and ``<pad>`` the last id, and the decoder
starts from ``<pad>``. :class:`SentencePieceTokenizer` reproduces ``transformers.MarianTokenizer``:

* encoding: a leading language code ``>>xx<<`` is one token; the rest is cut into pieces by the side's
  SentencePiece model (which normalizes the text itself), each looked up in the vocabulary (``<unk>`` when absent);
* decoding (as ``MarianTokenizer.decode(ids, skip_special_tokens=True)``): padding and ``<unk>`` are dropped,
  decoding stops at the first ``</s>``, and the pieces are joined by a SentencePiece model: the source one when the
  vocabulary is shared, the target one otherwise (the same choice ``transformers`` makes).

Unlike ``MarianTokenizer``, special-token strings typed in the text (``</s>``) are text, as for every tformer
tokenizer. Needs the ``sentencepiece`` package (``pip install 'tformer[hf]'``).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from tformer.data.special_tokens import TokenizerError, find_special_ids
from tformer.io.files import atomic_write_bytes, atomic_write_text

__all__ = ["SentencePieceTokenizer", "load_sentencepiece"]

LANGUAGE_CODE = re.compile(r">>[^<>\s]+<<")  # Marian's target-language token at the start of a source text


def load_sentencepiece(model: bytes, where: str):
    """A ``sentencepiece.SentencePieceProcessor`` of a serialized model (one-line errors)."""
    try:
        import sentencepiece
    except ImportError:
        raise TokenizerError(f"{where} is a SentencePiece model: pip install sentencepiece "
                             "(or 'tformer[hf]')") from None
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model)
    except Exception as err:  # sentencepiece raises RuntimeError or OSError
        raise TokenizerError(f"{where} is not a SentencePiece model: {str(err).splitlines()[0]}") from None
    return processor


class SentencePieceTokenizer:
    """One side of a Marian-style tokenizer: a SentencePiece model that cuts text into pieces, a vocabulary that
    numbers them, and the model that joins output pieces (see the module docstring).

    Args:
        model: the serialized SentencePiece model that encodes this side's text (the bytes of ``source.spm``).
        vocab: piece -> id.
        decoder_model: the serialized model that joins decoded pieces (default ``model``).
    """

    def __init__(self, model: bytes, vocab: dict[str, int], decoder_model: bytes | None = None) -> None:
        self.model_bytes, self.decoder_bytes = model, decoder_model if decoder_model is not None else model
        self._encoder = load_sentencepiece(self.model_bytes, "the tokenizer")
        self._decoder = load_sentencepiece(self.decoder_bytes, "the tokenizer")
        self.vocab = dict(vocab)
        self._pieces = {i: piece for piece, i in self.vocab.items()}
        ids = find_special_ids(self.vocab.get, "the vocabulary")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids["pad"], ids["bos"], ids["eos"], ids["unk"]

    @property
    def vocab_size(self) -> int:
        """The number of ids: one more than the largest id of the vocabulary."""
        return max(self._pieces) + 1

    # ----------------------------------------------------------------------------- text <-> ids

    def tokens(self, text: str) -> list[str]:
        """The pieces of ``text``: its language code, if any, then the SentencePiece pieces."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        code = LANGUAGE_CODE.match(text)
        head, text = ([code.group()], text[code.end():]) if code else ([], text)
        try:
            return head + self._encoder.encode(text, out_type=str)
        except (TypeError, UnicodeEncodeError, RuntimeError) as err:
            raise TokenizerError(f"cannot encode the text: {err}") from None

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s pieces (``<unk>`` for a piece outside the vocabulary), without ``</s>``."""
        return [self.vocab.get(piece, self.unk_id) for piece in self.tokens(text)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of each text."""
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of output ids: padding, the start token and ``<unk>`` dropped, stopped at the first ``</s>``.

        Raises:
            ValueError: a tensor that is not 1-D, or an id outside the vocabulary.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D tensor, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        pieces: list[str] = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id, self.unk_id):
                continue
            if i not in self._pieces:
                raise ValueError(f"token id {i} is outside the vocabulary of size {self.vocab_size}")
            pieces.append(self._pieces[i])
        return self._decoder.decode_pieces(pieces).replace("▁", " ").strip()

    def decode_batch(self, batch: Sequence[Sequence[int]] | torch.Tensor) -> list[str]:
        """:meth:`decode` of each row of a list of id lists or a 2-D tensor (B, L)."""
        if isinstance(batch, torch.Tensor) and batch.dim() != 2:
            raise ValueError(f"decode_batch expects a 2-D tensor (B, L), got shape {tuple(batch.shape)}")
        return [self.decode(row) for row in batch]

    def id_to_token(self, i: int) -> str:
        """The piece of id ``i`` (ValueError outside the vocabulary)."""
        if i not in self._pieces:
            raise ValueError(f"token id {i} is outside the vocabulary of size {self.vocab_size}")
        return self._pieces[i]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """The complete tokenizer as JSON text (the models base64-encoded): :meth:`from_json` reads it back, and
        its hash fingerprints the tokenizer (e.g. of a cached tokenized corpus)."""
        return json.dumps({"sentencepiece": base64.b64encode(self.model_bytes).decode("ascii"),
                           "decoder": base64.b64encode(self.decoder_bytes).decode("ascii"), "vocab": self.vocab},
                          ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SentencePieceTokenizer:
        """The tokenizer of :meth:`to_json`'s text (one-line TokenizerError if it is not one)."""
        try:
            doc = json.loads(text)
            return cls(base64.b64decode(doc["sentencepiece"]), doc["vocab"], base64.b64decode(doc["decoder"]))
        except (ValueError, KeyError, TypeError) as err:
            raise TokenizerError(f"not a SentencePiece tokenizer: {err}") from None

    def save(self, model_path: str | os.PathLike, vocab_path: str | os.PathLike) -> None:
        """Write the SentencePiece model and the vocabulary (JSON), each atomically."""
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(model_path, self.model_bytes)
        atomic_write_text(vocab_path, json.dumps(self.vocab, ensure_ascii=False, indent=1))


def read_vocab(path: Path) -> dict[str, int]:
    """A ``vocab.json`` (piece -> id), checked: one-line TokenizerError naming the file."""
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerError(f"cannot read the vocabulary {path}: {err}") from None
    if not isinstance(vocab, dict) or not vocab or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in vocab.items()):
        raise TokenizerError(f"{path} is not a vocabulary (a JSON object of piece -> id >= 0)")
    if len(set(vocab.values())) != len(vocab):
        raise TokenizerError(f"{path} gives two pieces the same id")
    return vocab
