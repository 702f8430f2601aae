import torch

from tformer.nn.feedforward import PositionwiseFeedForward


def test_eq2_max0_xw1_plus_b1_w2_plus_b2():
    ffn = PositionwiseFeedForward(8, 32)
    x = torch.randn(2, 5, 8)
    w1, b1, w2, b2 = ffn.w_1.weight, ffn.w_1.bias, ffn.w_2.weight, ffn.w_2.bias
    expected = torch.clamp(x @ w1.T + b1, min=0) @ w2.T + b2
    torch.testing.assert_close(ffn(x), expected)


def test_applied_to_each_position_separately():
    ffn = PositionwiseFeedForward(8, 16, activation="gelu")
    x = torch.randn(1, 6, 8)
    perm = torch.randperm(6)
    torch.testing.assert_close(ffn(x)[:, perm], ffn(x[:, perm]))
