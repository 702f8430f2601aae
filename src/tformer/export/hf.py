"""A trained translation model as a Hugging Face folder: ``transformers`` loads it with its own classes.

``tformer export RUN --format hf -o DIR`` writes what ``MarianMTModel.save_pretrained`` writes (``config.json``,
``generation_config.json``, ``model.safetensors``) and the tokenizer:

* a run whose tokenizer is Marian's (SentencePiece ``source.spm``/``target.spm`` + ``vocab.json``, as
  ``tformer import`` writes it) gets ``MarianTokenizer``'s files;
* a run with tformer's own tokenizer gets a ``PreTrainedTokenizerFast`` (``tokenizer.json`` with a post-processor
  that appends ``</s>`` to each source, as tformer does); with separate vocabularies, the source tokenizer is in
  ``DIR`` and the target one, which decodes the outputs, in ``DIR/target_tokenizer``.

The weights go through :func:`tformer.interop.marian.to_marian_state_dict` (the paper's interleaved positions are
a permutation of Marian's, see there); ``generation_config.json`` forbids generating padding (``bad_words_ids``,
as OPUS-MT checkpoints do) and sets beam 4. Hugging Face's length penalty divides by ``length ** alpha``, not by
GNMT's ``((5 + length) / 6) ** alpha``: for the same beam outputs, pass ``length_penalty=0`` to both.

:class:`Runtime` is the outside client the export check uses: it loads ``DIR`` with ``transformers`` only
(``AutoModelForSeq2SeqLM``, ``AutoTokenizer``) and translates greedily with ``generate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from tformer.data.sentencepiece_vocab import SentencePieceTokenizer
from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError
from tformer.interop.marian import marian_config_fields, to_marian_state_dict
from tformer.translator import Translator

TARGET_TOKENIZER = "target_tokenizer"

try:
    import transformers
except ImportError as e:  # cli.export turns this into "pip install 'tformer[hf]'"
    raise ImportError("--format hf needs transformers", name="transformers") from e


def marian_model(translator: Translator) -> transformers.MarianMTModel:
    """A ``MarianMTModel`` holding the translator's weights (one line when the model cannot be one)."""
    cfg = translator.model.cfg
    try:
        fields = marian_config_fields(cfg)
    except ValueError as e:
        raise TformerError(f"a Marian model cannot hold this run: {e}") from None
    hf = transformers.MarianMTModel(transformers.MarianConfig(**fields)).eval()
    missing, unexpected = hf.load_state_dict(to_marian_state_dict(translator.model), strict=False)
    left = [k for k in missing if "embed_positions" not in k]
    if left or unexpected:
        raise TformerError(f"the Marian mapping missed {left[:3]} and has extra {unexpected[:3]}")
    hf.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=cfg.bos_id, eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id,
        bad_words_ids=[[cfg.pad_id]], num_beams=4, max_length=cfg.max_len)
    return hf


def fast_tokenizer(tok: Tokenizer) -> transformers.PreTrainedTokenizerFast:
    """tformer's tokenizer as a ``PreTrainedTokenizerFast`` that appends ``</s>`` as tformer's sources end."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import processors

    backend = Backend.from_str(tok.to_json())
    eos = tok.id_to_token(tok.eos_id)
    backend.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, tok.eos_id)])
    names = {f"{role}_token": tok.id_to_token(getattr(tok, f"{role}_id")) for role in ("pad", "eos", "unk", "bos")}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                                model_input_names=["input_ids", "attention_mask"], **names)


def save_tokenizer(translator: Translator, out_dir: Path) -> str:
    """The tokenizer files; returns the class ``transformers`` loads them with."""
    vocabs = translator.vocabs
    if isinstance(vocabs.src, SentencePieceTokenizer):
        vocabs.save(out_dir)
        transformers.MarianTokenizer(str(out_dir / "source.spm"), str(out_dir / "target.spm"),
                                     str(out_dir / "vocab.json"),
                                     target_vocab_file=str(out_dir / "target_vocab.json"),
                                     separate_vocabs=(out_dir / "target_vocab.json").is_file()).save_pretrained(out_dir)
        return "MarianTokenizer"
    fast_tokenizer(vocabs.src).save_pretrained(out_dir)
    if not vocabs.shared:
        fast_tokenizer(vocabs.tgt).save_pretrained(out_dir / TARGET_TOKENIZER)
    return "PreTrainedTokenizerFast"


def export(translator: Translator, out_dir: Path) -> dict:
    """Write ``translator`` into ``out_dir`` as a Hugging Face Marian folder (see the module docstring)."""
    if type(translator.model).__name__ != "Transformer":
        raise TformerError(f"--format hf writes encoder-decoder Transformers; this run holds a "
                           f"{type(translator.model).__name__}")
    hf = marian_model(translator)
    hf.save_pretrained(out_dir)
    tokenizer_class = save_tokenizer(translator, out_dir)
    return {"architecture": "MarianMTModel", "tokenizer": tokenizer_class,
            "target_tokenizer": TARGET_TOKENIZER if (out_dir / TARGET_TOKENIZER).is_dir() else None}


class Runtime:
    """A folder written by :func:`export`, loaded and run by ``transformers`` alone."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        out_dir = Path(out_dir)
        self.model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out_dir).eval()
        self.model.generation_config.max_length = None  # each batch sets max_new_tokens
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)
        target = out_dir / TARGET_TOKENIZER
        self.target_tokenizer = transformers.AutoTokenizer.from_pretrained(target) if target.is_dir() else None

    @torch.no_grad()
    def translate(self, texts: Sequence[str], beam_size: int = 1, max_tokens: int = 4096, *,
                  length_penalty: float = 0.0, warn=None) -> list[str]:
        """``generate`` on batches of sources of one length (so no batch needs padding), at most ``max_tokens``
        source tokens each, up to the source length + 50 new tokens: tformer's default limit (§6.1)."""
        decoder = self.target_tokenizer or self.tokenizer
        ids = self.tokenizer(list(texts))["input_ids"]
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        out: list[str] = [""] * len(texts)
        limit = self.model.config.max_position_embeddings
        lp = {"length_penalty": length_penalty} if beam_size > 1 else {}
        for length, rows in by_length.items():
            step = max(1, max_tokens // length)
            for start in range(0, len(rows), step):
                chunk = rows[start: start + step]
                src = torch.tensor([ids[i] for i in chunk])  # (B, S), one length
                hyps = self.model.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beam_size,
                                           do_sample=False, max_new_tokens=min(length + 50, limit), **lp)
                for i, text in zip(chunk, decoder.batch_decode(hyps, skip_special_tokens=True), strict=True):
                    out[i] = text
        return out
