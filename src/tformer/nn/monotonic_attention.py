"""Hard monotonic attention (Raffel et al., 2017, "Online and Linear-Time Attention by Enforcing Monotonic
Alignments"), as multi-head encoder-decoder attention: each head attends to one source position per target
position, and that position never moves backwards.

At output step i a head scans the source from where step i-1 stopped, t_{i-1}, and stops at the first j whose
"choose" probability p_{i,j} = sigmoid(e_{i,j}) says so; it attends to h_j alone. Scanning past the end without
stopping gives a zero context, and every later step too (the alignment has run off the source). At inference the
choice is z_{i,j} = 1[p_{i,j} >= 0.5] (Algorithm 1, deterministic): :func:`hard_alignments`.

Training cannot back-propagate through the discrete choices; it attends with the expected alignment instead,
the probability α_{i,j} that step i stops at j, which follows from α_{i-1} (α_0 = δ_{j,1}: step 1 scans from the
first position):

    α_{i,j} = p_{i,j} Σ_{k<=j} α_{i-1,k} Π_{l=k}^{j-1} (1 - p_{i,l})                   (Eq. 9)
    q_{i,j} = (1 - p_{i,j-1}) q_{i,j-1} + α_{i-1,j},   α_{i,j} = p_{i,j} q_{i,j}        (Eq. 10-11)

computed over j at once with cumulative products and sums (:func:`expected_alignment`):

    α_i = p_i · cumprod(1 - p_i) · cumsum(α_{i-1} / cumprod(1 - p_i))                     (Eq. 12-14)

where cumprod is exclusive (the product over l < j) and, as in the paper's appendix and TensorFlow's
``monotonic_attention``, taken in log space with its factors clamped to [tiny, 1] and clamped to >= 1e-10
where it divides. Each row sums to at most 1 (what is missing is the probability of running off the source).

Energies: the paper's modified energy function is e_{i,j} = g · vᵀ/‖v‖ tanh(W s_{i-1} + V h_j + b) + r, with a
learned scalar bias r (initially -4) and weight normalisation g v/‖v‖ (g initially 1/sqrt(d), as TensorFlow's
``BahdanauMonotonicAttention(normalize=True)``). With dot-product heads the query plays v's part (it is what
the key is scored against), so per head h

    e^h_{i,j} = g_h (q^h_i / ‖q^h_i‖) · k^h_j + r_h,     g_h = 1/sqrt(d_k), r_h = -4 initially

and the energy's scale is the learned g_h, not the query's norm. In training, Gaussian noise of standard deviation
``noise`` (the paper: 1) is added to the energies before the sigmoid, which pushes p towards 0 or 1 so that the
expected alignment the model learns with is close to the hard one it decodes with (the paper's "encouraging
discreteness"). At inference (eval mode) there is no noise and the alignment is hard; teacher forcing in eval mode
makes the same hard choices as cached decoding (so a validation loss in eval mode scores the hard attention that
decoding uses).

Shape legend: B batch, H heads, T target positions, S source length, Dh head width; "..." any leading dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.nn.aligned_attention import AlignedAttention

__all__ = ["MonotonicAttention", "expected_alignment", "expected_alignment_recurrent", "expected_alignments",
           "hard_alignments", "hard_step", "safe_exclusive_cumprod"]

CUMPROD_FLOOR = 1e-10  # the smallest cumprod(1 - p) divided by (the paper's appendix; TensorFlow's clip)


def safe_exclusive_cumprod(x: Tensor) -> Tensor:
    """Π_{l<j} x_l along the last dim (1 at j = 0), as exp(cumsum(log x)) with x clamped to [tiny, 1]: no 0 * inf
    where a factor is 0, and no underflow to exactly 0 of the products it divides by."""
    tiny = torch.finfo(x.dtype).tiny
    logs = torch.log(x.clamp(min=tiny, max=1.0)).cumsum(dim=-1)  # (..., S) inclusive sums
    return torch.exp(F.pad(logs[..., :-1], (1, 0)))  # shifted right: exclusive, (..., S)


def expected_alignment(p: Tensor, previous: Tensor) -> Tensor:
    """α_i (..., S) from the choose probabilities p_i (..., S) and α_{i-1} (..., S), in parallel over j
    (Eq. 12-14)."""
    cumprod = safe_exclusive_cumprod(1.0 - p)  # Π_{l<j} (1 - p_{i,l})
    return p * cumprod * torch.cumsum(previous / cumprod.clamp(min=CUMPROD_FLOOR, max=1.0), dim=-1)


def expected_alignment_recurrent(p: Tensor, previous: Tensor) -> Tensor:
    """The same α_i by the recurrence over j (Eq. 10-11): the oracle of :func:`expected_alignment`."""
    q = previous[..., 0]  # q_{i,1} = α_{i-1,1}
    columns = [p[..., 0] * q]
    for j in range(1, p.shape[-1]):
        q = (1.0 - p[..., j - 1]) * q + previous[..., j]
        columns.append(p[..., j] * q)
    return torch.stack(columns, dim=-1)  # (..., S)


def expected_alignments(p: Tensor, previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The expected alignments of every step: p (..., T, S) -> α (..., T, S) and α of the last step (..., S).
    ``previous``: α of the step before the first (None = α_0, all mass on the first source position)."""
    if previous is None:
        previous = torch.zeros_like(p[..., 0, :])
        previous[..., 0] = 1.0
    rows = []
    for i in range(p.shape[-2]):
        previous = expected_alignment(p[..., i, :], previous)
        rows.append(previous)
    return torch.stack(rows, dim=-2), previous


def hard_step(p: Tensor, position: Tensor) -> tuple[Tensor, Tensor]:
    """One step of hard monotonic attention (Algorithm 1, z = 1[p >= 0.5]): p (..., S), the previous step's
    position (...) -> one-hot weights (..., S) at the first j >= position with p_j >= 0.5 (all zero if there is
    none: a zero context) and the new position (S = ran off the source; it stays there)."""
    s = p.shape[-1]
    j = torch.arange(s, device=p.device)
    stop = (p >= 0.5) & (j >= position[..., None])  # (..., S)
    found = stop.any(dim=-1)  # (...)
    first = stop.to(torch.uint8).argmax(dim=-1)  # (...) the first True (argmax returns the first maximum)
    weights = F.one_hot(first, s).to(p.dtype) * found[..., None].to(p.dtype)  # (..., S)
    return weights, torch.where(found, first, torch.full_like(first, s))


def hard_alignments(p: Tensor, position: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Hard monotonic attention of every step: p (..., T, S) -> one-hot (or zero) weights (..., T, S) and the
    last step's position (...). ``position``: where the step before the first stopped (None = 0)."""
    if position is None:
        position = torch.zeros(p.shape[:-2], dtype=torch.long, device=p.device)
    rows = []
    for i in range(p.shape[-2]):
        weights, position = hard_step(p[..., i, :], position)
        rows.append(weights)
    return torch.stack(rows, dim=-2), position


class MonotonicAttention(AlignedAttention):
    """Multi-head hard monotonic attention (Raffel et al., 2017; see the module docstring): in training the
    expected alignment (Eq. 12-14) with noisy energies, in eval mode the hard alignment (Algorithm 1).

    Args:
        d_model, num_heads, attention_dropout, **options: as :class:`~tformer.nn.attention.MultiHeadAttention`
            (``d_head``, ``bias``; ``scale_scores`` is unused: g_h sets the energies' scale).
        bias_init: the initial energy bias r (the paper: -4).
        noise: the standard deviation of the Gaussian noise on the energies in training (the paper: 1; 0 = none).
    """

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, *, bias_init: float = -4.0,
                 noise: float = 1.0, **options) -> None:
        super().__init__(d_model, num_heads, attention_dropout, **options)
        if noise < 0:
            raise ValueError(f"the energy noise must be >= 0, got {noise}")
        self.noise = noise
        self.energy_gain = nn.Parameter(torch.full((self.num_heads,), self.d_head**-0.5))  # g_h
        self.energy_bias = nn.Parameter(torch.full((self.num_heads,), float(bias_init)))  # r_h

    def choose_probabilities(self, q: Tensor, k: Tensor, allowed: Tensor) -> Tensor:
        """p_{i,j} = sigmoid(e_{i,j} [+ noise in training]) (B, H, T, S), 0 where not ``allowed`` (B, 1, T, S)."""
        direction = F.normalize(q, dim=-1)  # q / ‖q‖, (B, H, T, Dh)
        energy = (direction @ k.transpose(-2, -1)) * self.energy_gain[:, None, None] \
            + self.energy_bias[:, None, None]  # (B, H, T, S)
        if self.training and self.noise > 0:
            energy = energy + self.noise * torch.randn_like(energy)
        return torch.sigmoid(energy).masked_fill(~allowed, 0.0)

    def align(self, q: Tensor, k: Tensor, allowed: Tensor, state: dict[str, Tensor]) -> Tensor:
        """The expected alignment (training; ``state`` "alignment" (B, H, S)) or the hard one (eval; ``state``
        "position" (B, H)), (B, H, T, S)."""
        p = self.choose_probabilities(q, k, allowed)
        if p.dtype in (torch.float16, torch.bfloat16):  # the cumulative products and 1e-10 need float32 at least
            p = p.float()
        if self.training:
            weights, state["alignment"] = expected_alignments(p, state.get("alignment"))
        else:
            weights, state["position"] = hard_alignments(p, state.get("position"))
        return weights.to(q.dtype)
