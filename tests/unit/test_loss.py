"""§5.4 label smoothing: the explicit target distribution and the fast loss agree, pad is excluded."""

import pytest
import torch

from tformer.training.loss import label_smoothed_loss, smoothed_targets

PAD = 0


def test_smoothed_targets_sum_to_one_and_exclude_pad():
    target = torch.tensor([[5, 3, PAD], [1, 9, 2]])
    q = smoothed_targets(target, vocab_size=10, eps=0.1, pad_id=PAD)
    rows = target.reshape(-1)
    for i, y in enumerate(rows.tolist()):
        if y == PAD:
            assert q[i].sum() == 0
        else:
            assert q[i].sum().item() == pytest.approx(1.0, abs=1e-6)
            assert q[i, PAD] == 0
            assert q[i, y].item() == pytest.approx(0.9)
            others = [k for k in range(10) if k not in (y, PAD)]
            assert torch.allclose(q[i, others], torch.full((8,), 0.1 / 8))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_fast_loss_equals_cross_entropy_with_explicit_targets(eps):
    logits = torch.randn(3, 4, 12)
    target = torch.randint(1, 12, (3, 4))
    target[0, 2:] = PAD
    out = label_smoothed_loss(logits, target, eps, PAD)
    q = smoothed_targets(target, 12, eps, PAD)
    reference = -(q * logits.reshape(-1, 12).log_softmax(-1)).sum()
    torch.testing.assert_close(out.loss, reference, atol=1e-4, rtol=1e-5)
    assert out.num_tokens == int((target != PAD).sum())


def test_without_smoothing_it_is_torch_cross_entropy_ignoring_pad():
    logits = torch.randn(2, 5, 7)
    target = torch.randint(1, 7, (2, 5))
    target[1, 3:] = PAD
    out = label_smoothed_loss(logits, target, 0.0, PAD)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), target.reshape(-1), ignore_index=PAD,
                                            reduction="sum")
    torch.testing.assert_close(out.loss, ref)
    torch.testing.assert_close(out.nll, ref)


def test_gradient_flows_and_pad_logits_get_none_from_pad_positions():
    logits = torch.randn(1, 3, 6, requires_grad=True)
    target = torch.tensor([[4, PAD, PAD]])
    label_smoothed_loss(logits, target, 0.1, PAD).loss.backward()
    assert logits.grad[0, 0].abs().sum() > 0
    assert torch.all(logits.grad[0, 1:] == 0)
