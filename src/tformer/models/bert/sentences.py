"""Sentence embeddings from the encoder-only model: the mean of the last hidden states over the real tokens,
L2-normalised (what sentence-transformers computes for all-MiniLM-L6-v2; Reimers & Gurevych, 2019).

    hidden ─► masked mean ─► L2 normalisation ─► sentence embedding

Shape legend: B batch, S length, D d_model, N sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.errors import TformerError
from tformer.models.bert.model import EncoderOnly, mean_pool
from tformer.nn.modes import eval_mode


def encoder_of(model: nn.Module) -> EncoderOnly:
    """The :class:`EncoderOnly` of ``model``: itself, or its ``encoder`` (a head model)."""
    if isinstance(model, EncoderOnly):
        return model
    if isinstance(getattr(model, "encoder", None), EncoderOnly):
        return model.encoder
    raise TformerError(f"expected an EncoderOnly model (or one with an .encoder), got {type(model).__name__}")


def sentence_embeddings(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
    *, normalize: bool = True,
) -> Tensor:
    """Sentence vectors (B, D): the mean of the last hidden states over real tokens, L2-normalised
    (what sentence-transformers computes for all-MiniLM-L6-v2). Dot products of normalised vectors are
    cosine similarities.

    Keeps gradients and the model's mode: for inference call ``model.eval()`` and use ``torch.no_grad()``
    (or :func:`encode_sentences`, which does both).
    """
    hidden = encoder_of(model)(input_ids, attention_mask, token_type_ids)  # (B, S, D)
    pooled = mean_pool(hidden, attention_mask)  # (B, D)
    return F.normalize(pooled, p=2.0, dim=-1) if normalize else pooled


@torch.no_grad()
def encode_sentences(model: nn.Module, tokenizer, sentences: Sequence[str], *, batch_size: int = 32,
                     normalize: bool = True) -> Tensor:
    """Text in, sentence vectors (N, D) out, in eval mode and batches of ``batch_size``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (e.g. from :func:`tformer.interop.bert.load_bert_folder`);
            its own truncation applies, and each batch is cut to its longest sentence.
    """
    if isinstance(sentences, str):
        raise TformerError("encode_sentences takes a list of sentences, not one string")
    if batch_size < 1:
        raise TformerError(f"batch_size must be >= 1, got {batch_size}")
    encoder = encoder_of(model)
    device = next(encoder.parameters()).device
    out = []
    with eval_mode(encoder):
        for start in range(0, len(sentences), batch_size):
            encs = tokenizer.encode_batch(list(sentences[start : start + batch_size]))
            real = [[j for j, m in enumerate(e.attention_mask) if m] for e in encs]  # whatever padding it did
            width = max(map(len, real))  # the longest sentence of the batch
            ids = torch.full((len(encs), width), encoder.cfg.pad_id, dtype=torch.long)  # (B, S), right-padded
            types = torch.zeros(len(encs), width, dtype=torch.long)
            mask = torch.zeros(len(encs), width, dtype=torch.long)
            for i, (e, keep) in enumerate(zip(encs, real, strict=True)):
                n = len(keep)
                ids[i, :n] = torch.tensor([e.ids[j] for j in keep])
                types[i, :n] = torch.tensor([e.type_ids[j] for j in keep])
                mask[i, :n] = 1
            types_arg = types.to(device) if encoder.cfg.type_vocab_size else None
            out.append(sentence_embeddings(encoder, ids.to(device), mask.to(device), types_arg, normalize=normalize))
    return torch.cat(out) if out else torch.empty(0, encoder.cfg.d_model)
