"""tformer.nn.Linear: nn.Linear, with few-row CPU inference through a kept transposed copy of W (nn/linear.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tformer.nn.linear import FEW_ROWS, Linear


def _pair(bias: bool, dtype=torch.float32) -> tuple[Linear, nn.Linear]:
    torch.manual_seed(0)
    ours = Linear(24, 40, bias=bias).to(dtype)
    ref = nn.Linear(24, 40, bias=bias).to(dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 24), (4, 24), (1, 1, 24), (2, 2, 24), (1, 3, 24), (5, 24), (3, 7, 24)])
def test_it_computes_nn_linear_on_every_path(shape, bias):
    ours, ref = _pair(bias)
    x = torch.randn(shape)
    with torch.no_grad():
        y = ours(x)
    assert y.shape == ref(x).shape
    # float32 sums in a possibly different order: equal to a float64 oracle within float32's rounding
    exact = F.linear(x.double(), ref.weight.double(), None if ref.bias is None else ref.bias.double())
    torch.testing.assert_close(y.double(), exact, rtol=1e-5, atol=1e-5)


def test_few_rows_take_the_transposed_copy_and_more_rows_do_not():
    ours, _ = _pair(True)
    with torch.no_grad():
        ours(torch.randn(FEW_ROWS + 1, 24))
        assert ours._transposed is None
        ours(torch.randn(FEW_ROWS, 24))
    assert ours._transposed is not None
    assert ours._transposed[1].shape == (24, 40) and ours._transposed[1].is_contiguous()
    assert torch.equal(ours._transposed[1], ours.weight.t())


def test_the_copy_follows_the_weight_through_updates_loads_and_moves():
    ours, ref = _pair(True)
    x = torch.randn(1, 24)
    with torch.no_grad():
        ours(x)
        ours.weight.mul_(2)  # an in-place update (an optimizer step)
        torch.testing.assert_close(ours(x), F.linear(x, ours.weight, ours.bias))
        ours.load_state_dict(ref.state_dict())  # copy_ in place
        torch.testing.assert_close(ours(x), ref(x))
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    ours(torch.randn(3, 24)).square().sum().backward()
    opt.step()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), F.linear(x, ours.weight, ours.bias))
        ours.weight = nn.Parameter(torch.randn(40, 24))  # a new tensor
        torch.testing.assert_close(ours(x), F.linear(x, ours.weight, ours.bias))


@pytest.mark.parametrize("kind", ["fused", "foreach", "for-loop"])
def test_the_copy_follows_every_optimizer_step(kind):
    # A fused optimizer writes the weights in place without moving their version counter: the copy must still
    # follow (a training run's validation decodes between steps).
    ours, _ = _pair(True)
    x = torch.randn(1, 24)
    opt = torch.optim.AdamW(ours.parameters(), lr=0.1, fused=kind == "fused" or None, foreach=kind == "foreach")
    for _ in range(3):
        with torch.no_grad():
            ours(x)  # makes (or keeps) the copy
        ours(torch.randn(3, 24)).square().sum().backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), F.linear(x, ours.weight, ours.bias))  # a stale copy: off by ~lr


def test_training_is_nn_linear():
    """Grad mode takes F.linear: the same gradients, and no copy made."""
    ours, ref = _pair(True, torch.float64)
    x = torch.randn(1, 24, dtype=torch.float64)
    ours(x).sum().backward()
    ref(x).sum().backward()
    assert ours._transposed is None
    assert torch.equal(ours.weight.grad, ref.weight.grad) and torch.equal(ours.bias.grad, ref.bias.grad)


def test_the_state_dict_is_nn_linears():
    ours, ref = _pair(True)
    with torch.no_grad():
        ours(torch.randn(1, 24))
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    assert all(p is q for p, q in zip(ours.parameters(), [ours.weight, ours.bias], strict=True))


# Tracing is what the ONNX exporter does with these layers; torch 2.13 calls torch.jit.trace deprecated.
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_other_dtypes_and_traced_graphs_take_f_linear():
    ours, _ = _pair(True, torch.float64)
    with torch.no_grad():
        ours(torch.randn(1, 24, dtype=torch.float64))
        assert ours._transposed is None
        ours32, _ = _pair(True)
        x = torch.randn(1, 24)
        graph = str(torch.jit.trace(ours32, x, check_trace=False).graph)
    assert "aten::linear" in graph and "aten::addmm" not in graph  # no transposed copy baked in as a constant
    assert ours32._transposed is None


def test_decoding_is_the_same_with_and_without_the_fast_path(monkeypatch):
    """A whole model decodes the same tokens through either path (float64: no rounding can tell them apart)."""
    import tformer

    torch.manual_seed(0)
    cfg = tformer.TransformerConfig(vocab_size=50, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
                                    num_decoder_layers=2, max_len=32, dropout=0.0)
    model = tformer.Transformer(cfg).eval()
    src = torch.randint(4, 50, (3, 9))
    fast_path = ["greedy"] + [model.generate(src[i : i + 1], max_len=12) for i in range(3)]
    fast_path.append(model.generate(src[:1], beam_size=4, max_len=12))
    assert any(m._transposed is not None for m in model.modules() if isinstance(m, Linear))
    monkeypatch.setattr(Linear, "forward", nn.Linear.forward)
    reference = ["greedy"] + [model.generate(src[i : i + 1], max_len=12) for i in range(3)]
    reference.append(model.generate(src[:1], beam_size=4, max_len=12))
    assert all(torch.equal(a, b) for a, b in zip(fast_path[1:], reference[1:], strict=True))
