"""§5.4 label smoothing: the explicit target distribution and the fast loss agree, pad is excluded."""

import pytest
import torch

from tformer.training.label_smoothing import label_smoothed_loss, smoothed_targets

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


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fast_loss_gradient_equals_autograd_through_explicit_targets(eps):
    """The hand-written backward (p - q) against autograd through log_softmax and the explicit q."""
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 11, (4, 5))
    target[1, 2:] = PAD
    target[3, 0] = PAD
    label_smoothed_loss(logits, target, eps, PAD).loss.mul(0.7).backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    q = smoothed_targets(target, 11, eps, PAD).double()
    (-(q * ref_logits.reshape(-1, 11).log_softmax(-1)).sum() * 0.7).backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, atol=1e-7, rtol=1e-6)  # q is built in fp32


def test_fast_loss_passes_torch_gradcheck():
    logits = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, PAD, 8, 1, 2, PAD])
    assert torch.autograd.gradcheck(lambda z: label_smoothed_loss(z, target, 0.1, PAD).loss, (logits,))


@pytest.mark.parametrize("eps,chunk,bias", [(0.1, 4, True), (0.0, 7, False), (0.1, 1000, False)])
def test_fused_linear_loss_equals_linear_then_loss_with_gradients(eps, chunk, bias):
    """The pre-softmax layer fused with the loss, in blocks of ``chunk`` rows (one that does not divide N too)."""
    from tformer.training.label_smoothing import linear_label_smoothed_loss

    torch.manual_seed(1)
    h = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)  # N = 18 positions
    w = torch.randn(13, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(13, dtype=torch.float64, requires_grad=True) if bias else None
    target = torch.randint(1, 13, (3, 6))
    target[2, 3:] = PAD
    out = linear_label_smoothed_loss(h, w, b, target, eps, PAD, chunk=chunk)
    (out.loss * 0.3).backward()
    grads = [h.grad, w.grad] + ([b.grad] if bias else [])
    leaves = [t.detach().clone().requires_grad_(True) for t in ([h, w] + ([b] if bias else []))]
    ref = label_smoothed_loss(torch.nn.functional.linear(*leaves), target, eps, PAD)
    (ref.loss * 0.3).backward()
    torch.testing.assert_close(out.loss, ref.loss)
    torch.testing.assert_close(out.nll, ref.nll)
    assert out.num_tokens == ref.num_tokens
    for got, leaf in zip(grads, leaves, strict=True):
        torch.testing.assert_close(got, leaf.grad)


def test_fused_linear_loss_without_gradients_and_trainer_loss_equals_model_logits():
    from tformer import Transformer, TransformerConfig
    from tformer.tasks.translation import sequence_loss
    from tformer.training.label_smoothing import linear_label_smoothed_loss

    torch.manual_seed(2)
    model = Transformer(TransformerConfig.tiny(vocab_size=30)).eval()
    src, tgt = torch.randint(3, 30, (2, 7)), torch.randint(3, 30, (2, 6))
    tgt[1, 4:] = PAD
    with torch.no_grad():
        logits = model(src, tgt)
        fused = linear_label_smoothed_loss(model.decoder_states(src, tgt), model.output_projection.weight, None, tgt,
                                           0.1, PAD)
        torch.testing.assert_close(fused.loss, label_smoothed_loss(logits, tgt, 0.1, PAD).loss)
    a = sequence_loss(model, src, tgt, tgt, 0.1)
    a.loss.backward()
    g_fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    label_smoothed_loss(model(src, tgt), tgt, 0.1, PAD).loss.backward()
    for n, p in model.named_parameters():  # the tied embedding gets both of its gradients
        torch.testing.assert_close(g_fused[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_fused_linear_loss_does_no_gradient_work_without_grad_mode(monkeypatch):
    """Validation runs under no_grad: the fused loss must not compute (or keep) gradients there."""
    from tformer.training import label_smoothing as loss_module

    calls = []
    real_mm = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: calls.append(1) or real_mm(a, b))
    h = torch.randn(10, 4, requires_grad=True)
    w = torch.randn(9, 4, requires_grad=True)
    t = torch.randint(1, 9, (10,))
    with torch.no_grad():
        loss_module.linear_label_smoothed_loss(h, w, None, t, 0.1, PAD, chunk=3)
    assert calls == []  # no (c, V) @ (V, D) products for grad_h
    loss_module.linear_label_smoothed_loss(h, w, None, t, 0.1, PAD, chunk=3).loss.backward()
    assert len(calls) == 4 and h.grad is not None  # one per block with grad mode on


def test_generate_returns_ordinary_tensors():
    """Outputs of generate can be edited in place and fed back into training (back-translation)."""
    from tformer import Transformer, TransformerConfig

    model = Transformer(TransformerConfig.tiny(vocab_size=20))
    src = torch.randint(4, 20, (2, 5))
    for beam in (1, 2):
        out = model.generate(src, beam_size=beam, max_len=4)
        out[out == 3] = 4
        model.train()
        model(src, torch.cat([torch.full((2, 1), model.cfg.bos_id), out], dim=1)).sum().backward()
