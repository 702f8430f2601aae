"""LSH attention (kind "lsh", approximate): shared-QK attention (keys = the queries, normalised) among the
positions that angular locality-sensitive hashing puts in the same or the previous chunk after sorting by
bucket, over several hash rounds (Kitaev et al., 2020, "Reformer", §2). Not causal, self-attention only.

On random inputs (``benchmarks/long_attention.py``: T = 2048, 4 rounds of buckets of 64) it is 2.02 away from
dense shared-QK attention, relative; answering every query with the mean of V is 0.13 away. Random scores spread
the weights over all keys, and a method that sees a subset of them is far from that; LSH is built for inputs
where a few keys matter to each query.

Shape legend: B batch, H heads, T length, Tq/Tk queries/keys, Dh = d_k = d_v, C chunk length, N number of
chunks, R hash rounds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.config import ConfigError
from tformer.nn.attention_algorithms.common import as_4d, key_padding, safe_softmax
from tformer.nn.attention_algorithms.registry import AttentionAlgorithm, register_attention
from tformer.nn.masks import causal_mask, combine


def _self_excluded(s: Tensor, is_self: Tensor) -> Tensor:
    """Reformer §2: a position attends to itself only when it has nothing else. A score far below any other
    (but finite) gives exactly 0 weight beside any allowed key, and all the weight when it is alone."""
    return s.masked_fill(is_self, torch.finfo(s.dtype).min / 2)


def attention_shared_qk(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Dense shared-QK attention with Reformer's self rule, for the last Tq of Tk positions (incremental
    decoding with ``kind="lsh"``: each new query against every cached key, no hashing; Tq is small there).

    ``k`` (B, H, Tk, Dh) holds the normalised queries of all positions so far.
    """
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale  # (B, H, Tq, Tk)
    own = torch.arange(t_k, device=q.device)[None, :] == torch.arange(t_q, device=q.device)[:, None] + t_k - t_q
    s = _self_excluded(s, own)
    allowed = combine(as_4d(mask), causal_mask(t_q, t_k, device=q.device) if causal else None)
    allowed = torch.ones_like(s, dtype=torch.bool) if allowed is None else allowed.expand(s.shape)
    weights = safe_softmax(s, allowed)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, Tq, Dh)


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """x (B, H, T, D) taken at ``index`` (B, H, R, T) per round -> (B, H, R, T, D)."""
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, index.shape[2], t, d).gather(3, index[..., None].expand(*index.shape, d))


def _look_back(x: Tensor) -> Tensor:
    """Chunks (B, H, R, N, C, ...) -> each chunk followed by the previous one (the last for the first):
    (B, H, R, N, 2C, ...) (Reformer §2, "attend within the same chunk and one chunk back")."""
    return torch.cat([x, x.roll(1, dims=3)], dim=4)


def attention_lsh(
    q: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False, dropout_p: float = 0.0,
    scale: float | None = None, bucket_size: int = 64, n_rounds: int = 4, seed: int = 0,
) -> Tensor:
    """LSH attention (Reformer, Kitaev et al., 2020, §2): shared-QK self-attention among hash neighbours.

    Not causal: Reformer sorts the whole sequence at once, so later queries decide which earlier keys share a
    chunk, and an earlier position's output would depend on later tokens (``causal=True`` is refused; a
    decoder next to an lsh encoder uses full attention,
    :func:`~tformer.nn.attention_algorithms.registry.causal_attention_config`).

    Keys are the queries normalised, k_j = q_j / |q_j|. Each of R = ``n_rounds`` rounds hashes every key with
    a random rotation, h(x) = argmax([x Rot; -x Rot]) over n_buckets = 2 ceil(T / (2 bucket_size)) buckets
    (angular LSH), sorts the positions by (bucket, position), cuts the sorted sequence into chunks of
    ``bucket_size`` and lets each chunk attend to itself and the previous chunk (the first to the last).
    Padded keys are put in a bucket of their own that sorts after every real one, so they take no chunk
    places from real positions, and are excluded from every softmax; a position attends to itself only
    when it has nothing else. The output of a sequence still depends on how far its batch pads it: the
    number of buckets comes from the padded length, and the first chunk looks back to the last. The rounds' outputs are
    combined with weights softmax_r(logsumexp of round r's scores) (Reformer's multi-round combination; a
    key found in several rounds is not de-duplicated, so it weighs more, as in Hugging Face's Reformer).
    Memory: scores (B, H, R, T, 2 bucket_size). Error on random inputs: see the module docstring (2.02 relative
    to dense shared-QK attention at T = 2048, 4 rounds of 64).

    With one chunk (``bucket_size`` >= T) or two, every position sees every other and the result equals dense
    shared-QK attention with the self rule (:func:`attention_shared_qk`).

    Args:
        q: (B, H, T, Dh) queries (and, normalised, keys); v: (B, H, T, Dh).
        mask: None or a key-padding mask broadcastable to (B, H, 1, T).
        seed: seeds the rotations: the same seed gives the same hashes (see ``MultiHeadAttention``: a fixed
            seed in evaluation, a fresh one per call in training).

    Returns:
        (B, H, T, Dh); 0 in rows where nothing may be attended to (a padding position among padding).
    """
    if causal:
        raise ConfigError("lsh attention cannot be causal (Reformer's global sort lets later positions choose "
                          "the neighbours of earlier ones); use full, chunked or sliding attention in a decoder")
    key_real = key_padding(mask, "lsh")  # (B|1, H|1, T|1) or None
    t, dh = q.shape[-2:]
    scale = 1.0 / math.sqrt(dh) if scale is None else scale
    k = F.normalize(q, dim=-1)  # (B, H, T, Dh) shared-QK keys
    order, real = _sort_by_bucket(k, key_real, bucket_size=bucket_size, n_rounds=n_rounds, seed=seed)
    out, lse = _attend_within_chunks(q, k, v, order, real, bucket_size=bucket_size, scale=scale, dropout_p=dropout_p)
    return _combine_rounds(out, lse, order, t)  # (B, H, T, Dh)


def _sort_by_bucket(k: Tensor, key_real: Tensor | None, *, bucket_size: int, n_rounds: int, seed: int
                    ) -> tuple[Tensor, Tensor]:
    """Hash the keys k (B, H, T, Dh) R times (angular LSH) and sort the positions of each round by (bucket,
    position), padded to Tp = N C positions; returns the order (B, H, R, Tp) and which sorted places hold a
    real key (B, H, R, Tp). Padded keys and the padding to Tp get buckets of their own, sorted after every real one."""
    b, h, t, dh = k.shape
    tp = -(-t // bucket_size) * bucket_size  # padded length N C
    n_buckets = 2 * max(1, -(-t // (2 * bucket_size)))
    g = torch.Generator().manual_seed(seed)
    rotations = torch.randn(h, n_rounds, dh, n_buckets // 2, generator=g).to(device=k.device, dtype=k.dtype)
    rotated = torch.einsum("bhtd,hrdn->bhrtn", k.detach(), rotations)  # (B, H, R, T, n_buckets / 2)
    buckets = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, T)
    if key_real is not None:  # padded keys: a bucket of their own, after every real one
        buckets = buckets.masked_fill(~key_real.expand(*key_real.shape[:-1], t)[:, :, None, :], n_buckets)
    buckets = F.pad(buckets, (0, tp - t), value=n_buckets)  # (B, H, R, Tp) padding positions sort last
    position = torch.arange(tp, device=k.device)
    order = (buckets * tp + position).argsort(dim=-1)  # (B, H, R, Tp) sorted by (bucket, position)
    real = position < t  # (Tp,)
    if key_real is not None:
        real = real & F.pad(key_real.expand(*key_real.shape[:-1], t), (0, tp - t))  # (B|1, H|1, Tp)
    return order, real.expand(b, h, tp)[:, :, None].expand(b, h, n_rounds, tp).gather(3, order)  # (B, H, R, Tp)


def _attend_within_chunks(q: Tensor, k: Tensor, v: Tensor, order: Tensor, real: Tensor, *, bucket_size: int,
                          scale: float, dropout_p: float) -> tuple[Tensor, Tensor]:
    """Each chunk of C = ``bucket_size`` sorted positions attends to itself and the previous chunk, with the self
    rule; returns the outputs (B, H, R, Tp, Dh) and the log-sum-exp of the scores (B, H, R, Tp), in sorted order."""
    b, h, t, dh = q.shape
    n_rounds, tp = order.shape[2:]
    n, c = tp // bucket_size, bucket_size

    def chunks(x: Tensor) -> Tensor:  # (B, H, R, Tp, ...) -> (B, H, R, N, C, ...)
        return x.reshape(b, h, n_rounds, n, c, *x.shape[4:])

    pad = (0, 0, 0, tp - t)
    sq = chunks(_gather(F.pad(q, pad), order))  # (B, H, R, N, C, Dh) queries in sorted order
    sk = chunks(_gather(F.pad(k, pad), order))
    sv = chunks(_gather(F.pad(v, pad), order))
    q_pos, k_pos, k_real = chunks(order), chunks(order), chunks(real)  # (B, H, R, N, C)
    if n > 1:
        sk, sv, k_pos, k_real = _look_back(sk), _look_back(sv), _look_back(k_pos), _look_back(k_real)  # 2C keys
    s = sq @ sk.transpose(-2, -1) * scale  # (B, H, R, N, C, 2C)
    s = _self_excluded(s, k_pos[..., None, :] == q_pos[..., :, None])
    allowed = k_real[..., None, :].expand(s.shape)  # (B, H, R, N, C, 2C)
    weights = safe_softmax(s, allowed)  # (B, H, R, N, C, 2C)
    lse = s.masked_fill(~allowed, float("-inf")).logsumexp(dim=-1)  # (B, H, R, N, C), -inf in empty rows
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = (weights @ sv).reshape(b, h, n_rounds, tp, dh)  # (B, H, R, Tp, Dh) in sorted order
    return out, lse.reshape(b, h, n_rounds, tp)


def _combine_rounds(out: Tensor, lse: Tensor, order: Tensor, t: int) -> Tensor:
    """Undo each round's sort and combine the rounds with weights softmax_r(lse_r) (Reformer's multi-round
    combination): out (B, H, R, Tp, Dh), lse (B, H, R, Tp) in sorted order -> (B, H, T, Dh)."""
    dh = out.shape[-1]
    undo = order.argsort(dim=-1)  # (B, H, R, Tp) the inverse permutation
    out = out.gather(3, undo[..., None].expand(*undo.shape, dh))[:, :, :, :t]  # (B, H, R, T, Dh) original order
    lse = lse.gather(3, undo)[:, :, :, :t]  # (B, H, R, T)
    empty = torch.isinf(lse).all(dim=2, keepdim=True)  # (B, H, 1, T) nothing to attend to in any round
    round_weights = lse.masked_fill(empty, 0.0).softmax(dim=2)  # (B, H, R, T) exp(lse_r - logsumexp_r lse_r)
    return (round_weights[..., None] * out).sum(dim=2)  # (B, H, T, Dh)


@register_attention
class LSHAttention(AttentionAlgorithm):
    """Kind "lsh": :func:`attention_lsh` over hash buckets, with fresh rotations for every training call (drawn
    from torch's seeded RNG) and ``lsh_seed``'s in evaluation. In incremental decoding (a few new queries against
    cached keys) it attends densely (:func:`attention_shared_qk`): the new queries are few."""

    name = "lsh"
    can_be_causal = False
    takes_score_bias = False
    forms_weights = False
    shares_qk = True

    def shared_keys(self, q: Tensor) -> Tensor:
        """k_j = q_j / |q_j| (Reformer §2): (B, H, T, Dh)."""
        return F.normalize(q, dim=-1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, score_bias: Tensor | None = None,
                **options) -> Tensor:
        if q.shape[-2] != k.shape[-2]:  # incremental decoding: a few new queries against the cached keys
            return attention_shared_qk(q, k, v, mask, **options)
        seed = int(torch.randint(2**62, ())) if self.training else self.cfg.lsh_seed
        return attention_lsh(q, v, mask, bucket_size=self.cfg.lsh_bucket_size, n_rounds=self.cfg.lsh_rounds,
                             seed=seed, **options)  # (B, H, T, Dh)
