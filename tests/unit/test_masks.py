import torch

from tformer.nn.masks import causal_mask, combine, padding_mask


def test_padding_mask_marks_real_tokens():
    ids = torch.tensor([[5, 6, 0], [7, 0, 0]])
    m = padding_mask(ids, pad_id=0)
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)
    assert m.tolist() == [[j <= i for j in range(4)] for i in range(4)]


def test_combine_is_logical_and_and_ignores_none():
    a = causal_mask(3)
    b = torch.tensor([True, True, False])
    assert torch.equal(combine(None, a, b), a & b)
    assert combine(None, None) is None
