"""Token-budget batching and collation into padded tensors.

The paper batches "sentence pairs together by approximate sequence length. Each training batch
contained a set of sentence pairs containing approximately 25000 source tokens and 25000 target
tokens" (§5.1). :class:`TokenBatchSampler` does this: it sorts pairs by length, so that a batch holds
pairs of similar length and little padding, and fills each batch up to a budget of padded tokens.
:func:`collate` turns one batch of id lists into the model's tensors.

Shape legend: B = pairs in the batch, S = padded source length, T = padded target length.

Length convention: lengths given to the sampler are the id counts that the tokenizer returns, without
special tokens. :func:`collate` adds one token to each side (EOS to the source; BOS to the decoder
input and EOS to the labels), so a pair with lengths ``(s, t)`` occupies ``s + 1`` source and
``t + 1`` target positions. The sampler's cost counts these +1s, so the budget bounds the tensors the
model really sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from tformer.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tformer.errors import TformerError

__all__ = ["Batch", "TokenBatchSampler", "collate", "rank_share"]


class TokenBatchSampler:
    """Groups pair indices into batches of similar length under a budget of padded tokens.

    The cost of a batch is the size of its larger padded tensor::

        cost = len(batch) * max(max(s + 1 for s in src_lens), max(t + 1 for t in tgt_lens))

    (the +1 is the EOS or BOS that :func:`collate` adds). Every batch of two or more pairs costs at most
    ``max_tokens``. A single pair whose own cost exceeds ``max_tokens`` is not dropped: it forms a
    batch of its own, so that every pair appears exactly once per epoch (drop such pairs beforehand
    with :func:`tformer.data.corpus.filter_pairs` if they must not occur).

    Per epoch, with ``shuffle=True``, the pairs are put in a random order, cut into buckets of
    ``bucket_size`` pairs (one bucket holding all pairs when ``bucket_size`` is None), sorted by
    length within each bucket (stable, so equal lengths keep their random order), packed greedily
    into batches within each bucket, and the batches are put in a random order. Randomness comes
    only from a ``torch.Generator`` seeded with ``seed + epoch``: the same seed and epoch always give
    the same batches in the same order, and each epoch gives a different order. With
    ``shuffle=False`` the batches are the same every epoch, in order of increasing length.

    Resuming: :meth:`state_dict` records the epoch and how many of its batches :meth:`__iter__` has
    already handed out; after :meth:`load_state_dict`, iteration continues with exactly the
    remaining batches of that epoch. When an epoch's batches are exhausted the sampler moves on to the
    next epoch by itself; :meth:`set_epoch` selects an epoch explicitly. Note that a ``DataLoader``
    with worker processes draws batches ahead of the training loop; there, record the number of
    batches actually trained on and restore it with :meth:`load_state_dict`.

    Args:
        src_lengths: Token count of each source sentence (no special tokens).
        tgt_lengths: Token count of each target sentence (no special tokens).
        max_tokens: The budget of padded tokens per batch (the paper: about 25000).
        shuffle: Randomize batch composition and order per epoch; False for evaluation.
        seed: The base seed; epoch ``e`` uses ``seed + e``.
        bucket_size: Sort within random buckets of this many pairs instead of globally. Smaller
            buckets vary batch composition more between epochs at the price of more padding.

    Raises:
        TformerError: If the length lists differ in size, a length is negative, or a setting is not
            positive.
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int | None = None,
    ) -> None:
        if len(src_lengths) != len(tgt_lengths):
            raise TformerError(f"{len(src_lengths)} source lengths but {len(tgt_lengths)} target lengths")
        if max_tokens < 1:
            raise TformerError(f"max_tokens must be positive, got {max_tokens}")
        if bucket_size is not None and bucket_size < 1:
            raise TformerError(f"bucket_size must be positive or None, got {bucket_size}")
        self.src_lengths = torch.as_tensor(src_lengths, dtype=torch.long).reshape(-1)  # (N,)
        self.tgt_lengths = torch.as_tensor(tgt_lengths, dtype=torch.long).reshape(-1)  # (N,)
        if len(self.src_lengths) and min(self.src_lengths.min(), self.tgt_lengths.min()) < 0:
            raise TformerError("sentence lengths must not be negative")
        self.padded_lengths = torch.maximum(self.src_lengths, self.tgt_lengths) + 1  # (N,) with EOS/BOS
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = bucket_size
        self.epoch = 0
        self._consumed = 0  # batches of self.epoch already handed out by __iter__
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def num_pairs(self) -> int:
        """The number of sentence pairs, each of which appears once per epoch."""
        return len(self.src_lengths)

    # -------------------------------------------------------------------------- building batches

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """Returns all batches (lists of pair indices) of ``epoch``, in the order they are served."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._build_batches(epoch))
        return self._cache[1]

    def _build_batches(self, epoch: int) -> list[list[int]]:
        n = self.num_pairs
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        bucket_of = torch.zeros(n, dtype=torch.long)  # bucket of each pair: its shuffled position // size
        if self.bucket_size is not None:
            bucket_of[order] = torch.arange(n) // self.bucket_size

        # Sort by (bucket, padded length, source length, target length): stable sorts, last key first.
        for key in (self.tgt_lengths, self.src_lengths, self.padded_lengths, bucket_of):
            order = order[torch.sort(key[order], stable=True).indices]

        # Greedy packing: extend the batch while its cost stays within budget and its bucket.
        batches: list[list[int]] = []
        batch: list[int] = []
        batch_len = 0  # the padded length of the current batch
        batch_bucket = -1
        sorted_lengths = self.padded_lengths[order].tolist()
        sorted_buckets = bucket_of[order].tolist()
        for i, length, bucket in zip(order.tolist(), sorted_lengths, sorted_buckets, strict=True):
            new_len = max(batch_len, length)
            if batch and (bucket != batch_bucket or (len(batch) + 1) * new_len > self.max_tokens):
                batches.append(batch)
                batch, new_len = [], length
            batch.append(i)
            batch_len, batch_bucket = new_len, bucket
        if batch:
            batches.append(batch)

        if self.shuffle:
            batch_order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[j] for j in batch_order]
        return batches

    # -------------------------------------------------------------------------------- iterating

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch to serve. Selecting a new epoch starts it from its first batch.

        Selecting the current epoch again keeps the position, so a training loop may call
        ``set_epoch(epoch)`` at the top of every epoch, resumed ones included.
        """
        if epoch != self.epoch:
            self.epoch = epoch
            self._consumed = 0

    def __iter__(self) -> Iterator[list[int]]:
        """Yields the remaining batches of the current epoch, then moves on to the next epoch."""
        batches = self.batches_for_epoch(self.epoch)
        while self._consumed < len(batches):
            self._consumed += 1
            yield batches[self._consumed - 1]
        self.epoch += 1
        self._consumed = 0

    def __len__(self) -> int:
        """The number of batches the next iteration yields (the remainder of the current epoch)."""
        return len(self.batches_for_epoch(self.epoch)) - self._consumed

    def state_dict(self) -> dict[str, int]:
        """Returns the position to resume from: the epoch and the batches of it already served."""
        return {
            "epoch": self.epoch,
            "batches_consumed": self._consumed,
            "seed": self.seed,
            "num_pairs": self.num_pairs,
            "max_tokens": self.max_tokens,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restores a position saved by :meth:`state_dict`.

        Raises:
            TformerError: If the state was saved for a different seed, corpus size or token budget,
                which would make the remaining batches differ from the interrupted run's.
        """
        for key in ("seed", "num_pairs", "max_tokens"):
            if state[key] != getattr(self, key):
                raise TformerError(
                    f"sampler state was saved with {key}={state[key]}, but this sampler has {key}={getattr(self, key)}"
                )
        self.epoch = int(state["epoch"])
        self._consumed = int(state["batches_consumed"])

    # ------------------------------------------------------------------------------- statistics

    def padding_ratio(self, epoch: int | None = None) -> float:
        """Returns the fraction of pad tokens in the source and target tensors of an epoch.

        Args:
            epoch: The epoch to measure; the current one when None.

        Returns:
            ``pad tokens / all tokens`` over the ``src`` and ``tgt_out`` tensors of every batch.
        """
        pad = total = 0
        for batch in self.batches_for_epoch(self.epoch if epoch is None else epoch):
            for lengths in (self.src_lengths[batch] + 1, self.tgt_lengths[batch] + 1):
                slots = len(batch) * int(lengths.max())
                total += slots
                pad += slots - int(lengths.sum())
        return pad / total if total else 0.0


def rank_share(group: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """The batches of one global batch (one update) that ``rank`` of ``world_size`` trains on.

    ``group`` is the update's ``accumulate * world_size`` consecutive batches of the epoch order, which
    every rank computes alike (:meth:`TokenBatchSampler.batches_for_epoch`). They are dealt out in turn:
    rank r gets batches r, r + W, r + 2W, ... Batches cost about the same (the token budget), so
    the ranks get about the same work; together they cover ``group`` exactly once. The epoch's
    last update may have fewer batches than ranks: then some ranks get none.
    """
    if not 0 <= rank < world_size:
        raise TformerError(f"rank {rank} is outside world size {world_size}")
    return list(group[rank::world_size])


@dataclass(frozen=True)
class Batch:
    """One padded batch of sentence pairs, ready for the model; all tensors int64.

    ``tgt_in`` is the decoder input and ``tgt_out`` the labels: the target shifted by one position
    (teacher forcing, §3.1), so that position ``i`` of ``tgt_in`` predicts position ``i`` of ``tgt_out``.
    """

    src: torch.Tensor  # (B, S) source ids + EOS, right-padded with pad_id
    tgt_in: torch.Tensor  # (B, T) BOS + target ids, right-padded with pad_id
    tgt_out: torch.Tensor  # (B, T) target ids + EOS, right-padded with pad_id
    num_src_tokens: int  # non-pad tokens in src (EOS included)
    num_tgt_tokens: int  # non-pad tokens in tgt_out (EOS included): the loss's token count

    def __len__(self) -> int:
        return self.src.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Returns the batch with its tensors on ``device``."""
        return Batch(
            src=self.src.to(device, non_blocking=non_blocking),
            tgt_in=self.tgt_in.to(device, non_blocking=non_blocking),
            tgt_out=self.tgt_out.to(device, non_blocking=non_blocking),
            num_src_tokens=self.num_src_tokens,
            num_tgt_tokens=self.num_tgt_tokens,
        )

    def pin_memory(self) -> Batch:
        """Returns the batch in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return Batch(
            src=self.src.pin_memory(),
            tgt_in=self.tgt_in.pin_memory(),
            tgt_out=self.tgt_out.pin_memory(),
            num_src_tokens=self.num_src_tokens,
            num_tgt_tokens=self.num_tgt_tokens,
        )


def collate(
    batch: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int = PAD_ID,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> Batch:
    """Pads a list of ``(source ids, target ids)`` pairs into a :class:`Batch`.

    Args:
        batch: Pairs of id lists without special tokens, as the tokenizer returns them.
        pad_id: The padding id.
        bos_id: The beginning-of-sentence id, put before the target in ``tgt_in``.
        eos_id: The end-of-sentence id, put after the source in ``src`` and after the target in
            ``tgt_out``.

    Returns:
        The padded batch.

    Raises:
        ValueError: If ``batch`` is empty.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    num_pairs = len(batch)
    src_len = max(len(src) for src, _ in batch) + 1  # S: + EOS
    tgt_len = max(len(tgt) for _, tgt in batch) + 1  # T: + BOS (in) or EOS (out)
    src = torch.full((num_pairs, src_len), pad_id, dtype=torch.long)  # (B, S)
    tgt_in = torch.full((num_pairs, tgt_len), pad_id, dtype=torch.long)  # (B, T)
    tgt_out = torch.full((num_pairs, tgt_len), pad_id, dtype=torch.long)  # (B, T)
    for b, (src_ids, tgt_ids) in enumerate(batch):
        src[b, : len(src_ids) + 1] = torch.tensor([*src_ids, eos_id], dtype=torch.long)
        tgt_in[b, : len(tgt_ids) + 1] = torch.tensor([bos_id, *tgt_ids], dtype=torch.long)
        tgt_out[b, : len(tgt_ids) + 1] = torch.tensor([*tgt_ids, eos_id], dtype=torch.long)
    return Batch(
        src=src,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        num_src_tokens=sum(len(src_ids) + 1 for src_ids, _ in batch),
        num_tgt_tokens=sum(len(tgt_ids) + 1 for _, tgt_ids in batch),
    )
