"""§3.4 and §3.5: the sinusoid table in closed form, its layouts, and the sqrt(d_model) scale."""

import math

import pytest
import torch

from tformer.nn.embedding import TokenEmbedding
from tformer.nn.positional import SinusoidalPositionalEncoding, sinusoidal_table


@pytest.mark.parametrize("pos,i", [(0, 0), (1, 0), (7, 3), (50, 15), (999, 31)])
def test_sinusoid_equals_the_paper_formula(pos, i):
    d = 64
    pe = sinusoidal_table(1000, d)
    angle = pos / 10000 ** (2 * i / d)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_halves_layout_is_the_same_frequencies_reordered():
    inter, halves = sinusoidal_table(50, 16, "interleaved"), sinusoidal_table(50, 16, "halves")
    assert torch.equal(halves[:, :8], inter[:, 0::2]) and torch.equal(halves[:, 8:], inter[:, 1::2])


def test_relative_positions_are_a_linear_function_of_the_encoding():
    # §3.5: "for any fixed offset k, PE(pos+k) can be represented as a linear function of PE(pos)".
    d, k = 16, 5
    pe = sinusoidal_table(100, d).double()
    for i in range(d // 2):
        w = k / 10000 ** (2 * i / d)
        rot = torch.tensor([[math.cos(w), -math.sin(w)], [math.sin(w), math.cos(w)]], dtype=torch.float64)
        pair = pe[:, 2 * i : 2 * i + 2]  # (T, 2) = [sin, cos]
        torch.testing.assert_close(pair[:-k] @ rot, pair[k:], atol=1e-5, rtol=0)


def test_module_returns_positions_from_offset():
    m = SinusoidalPositionalEncoding(20, 8)
    assert torch.equal(m(3, offset=4), sinusoidal_table(20, 8)[4:7])


def test_token_embedding_is_scaled_by_sqrt_d_model():
    emb = TokenEmbedding(10, 16)
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(emb(ids), emb.weight[ids] * 4.0)
    unscaled = TokenEmbedding(10, 16, scale=False)
    torch.testing.assert_close(unscaled(ids), unscaled.weight[ids])
