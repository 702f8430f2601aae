"""Mixed precision on the CPU: bf16 and fp16 autocast in the training loop, fp16's gradient scaler (its
overflow skips, counted; exact resume with its state), and the fused output layer + loss under autocast."""

import math
import os

import pytest
import torch
from test_trainer import _assert_same_run, _metrics, _pairs, _stop_at_call, _trainer

from tformer.errors import TformerError
from tformer.training import devices
from tformer.training.devices import pick_precision
from tformer.training.label_smoothing import label_smoothed_loss, linear_label_smoothed_loss

CPU = torch.device("cpu")


def test_bf16_and_fp16_autocast_on_the_cpu_and_a_clear_error_where_torch_lacks_it(monkeypatch):
    assert pick_precision("bf16", CPU) is torch.bfloat16 and pick_precision("fp16", CPU) is torch.float16
    assert pick_precision("auto", CPU) is None and pick_precision("fp32", CPU) is None
    monkeypatch.setattr(devices, "_cpu_autocasts_to", lambda dtype: False)  # an older torch
    with pytest.raises(TformerError, match="train.precision fp16 needs a GPU .* use fp32 on the CPU"):
        pick_precision("fp16", CPU)


def test_fast_is_bf16_exactly_on_a_cpu_that_multiplies_bf16_natively(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert pick_precision("fast", CPU) is torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # AVX2-only: bf16 would be emulated
    assert pick_precision("fast", CPU) is None
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(devices, "_cpu_autocasts_to", lambda dtype: False)  # a torch whose CPU autocast lacks it
    assert pick_precision("fast", CPU) is None


def test_the_native_bf16_probe_agrees_with_the_cpu_flags():
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    assert devices.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_tile" in flags)


def _copy_pairs(n=32, length=5):
    g = torch.Generator().manual_seed(0)
    return [(s, s) for s in (torch.randint(4, 12, (length,), generator=g).tolist() for _ in range(n))]


def _fp16_trainer(run_dir, pairs, init_scale, growth_interval=2000, **train):
    """An fp16 trainer whose gradient scaler starts at ``init_scale`` (grows after ``growth_interval`` clean
    updates); a resumed trainer takes both from the checkpoint."""
    t = _trainer(run_dir, pairs, precision="fp16", **train)
    t.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=growth_interval)
    return t


LEARN_RUN = dict(max_tokens=48, max_steps=30, warmup_steps=8, log_every=1)


@pytest.fixture(scope="module")
def fp32_losses(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fp32")
    _trainer(run_dir, _copy_pairs(), **LEARN_RUN).train()
    return [r["loss"] for r in _metrics(run_dir) if r["kind"] == "train"]


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_training_in_bf16_and_fp16_learns_like_fp32(tmp_path, fp32_losses, precision, dtype):
    t = _trainer(tmp_path / precision, _copy_pairs(), precision=precision, **LEARN_RUN)
    assert t.amp_dtype is dtype and t.scaler.is_enabled() == (precision == "fp16")
    seen = set()  # the dtype a linear layer computes in, inside the loop
    t.model.decoder.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    summary = t.train()
    assert seen == {dtype} and summary["steps"] == 30
    losses = [r["loss"] for r in _metrics(tmp_path / precision) if r["kind"] == "train"]
    ref = fp32_losses
    assert losses[0] - sum(losses[-5:]) / 5 > 1.0  # from about ln(40) to the copied tokens' few
    assert abs(sum(losses[-5:]) / 5 - sum(ref[-5:]) / 5) < 0.1  # fp32 on these numbers: within ~0.001
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in t.model.parameters())
    assert all("loss_scale" in r for r in _metrics(tmp_path / precision) if r["kind"] == "train") == (
        precision == "fp16")


def test_an_fp16_overflow_is_skipped_counted_and_lowers_the_scale(tmp_path, monkeypatch):
    """From a scale of 2**40 every scaled gradient overflows fp16 (by orders of magnitude): the first updates
    are skipped, each halving the scale, until one fits. More than train.nonfinite_limit (5) such skips in a
    row stop nothing: they are the scaler's."""
    import tformer.tasks.translation as tr

    t = _fp16_trainer(tmp_path, _pairs(30, 4), 2.0**40, max_tokens=50, max_steps=3)
    seen = []  # (weights, scale, lr, Adam's state) as each update starts
    real = tr.sequence_loss

    def spying(*args, **kw):
        seen.append(({k: v.clone() for k, v in t.model.state_dict().items()}, t.scaler.get_scale(),
                     t.scheduler.get_last_lr(), len(t.optimizer.state)))
        return real(*args, **kw)

    monkeypatch.setattr(tr, "sequence_loss", spying)
    summary = t.train()
    skips = [r for r in _metrics(tmp_path) if r["kind"] == "skip"]
    n = len(skips)
    assert n > 5 and summary["steps"] == 3 and len(seen) == n + 3
    assert summary["skipped_updates"] == summary["overflow_skips"] == t.state.overflow_skips == n
    assert t.state.nonfinite_in_a_row == 0
    assert [r["loss_scale"] for r in skips] == [2.0**(40 - i) for i in range(n)]
    assert [s[1] for s in seen[: n + 1]] == [2.0**(40 - i) for i in range(n + 1)]  # halved by each skip
    assert all(r["step"] == 1 and "gradient overflow" in r["reason"] for r in skips)  # the update they were
    weights0, _, lr0, _ = seen[0]
    for weights, _, lr, adam in seen[1 : n + 1]:  # a skipped update changed nothing
        assert all(torch.equal(weights[k], weights0[k]) for k in weights0) and lr == lr0 and adam == 0
    assert not all(torch.equal(seen[n + 1][0][k], weights0[k]) for k in weights0)  # the first that fit did
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_fp16_gradients_nonfinite_at_any_scale_still_stop_the_run(tmp_path, monkeypatch):
    """A NaN gradient is an overflow to the scaler; once its scale is down to 1 it counts towards the limit."""
    from tformer.training.faults import NonFiniteLoss

    t = _fp16_trainer(tmp_path, _pairs(30, 4), 4.0, max_tokens=50, max_steps=20, nonfinite_limit=3)
    w = t.model.encoder.layers[0].self_attn.q_proj.weight
    w.register_hook(lambda g: g * float("nan"))
    with pytest.raises(NonFiniteLoss, match="3 updates in a row"):
        t.train()
    assert (t.state.overflow_skips, t.state.nonfinite_in_a_row, t.state.step) == (2, 3, 0)  # at 4, 2; 1, 0.5, 0.25


# Scale 2**20 (twice what this model's first gradients fit) and growth after every 2 clean updates: overflows
# come back through the run (grow, overflow, back off), so a resume that lost the scaler's scale or growth
# count would skip other updates. Here the skipped updates are the first (calls 1-2 of sequence_loss) and the
# one after step 6 (call 15, the second epoch's lone last batch; 7 batches an epoch, 2 an update, a validation
# call at step 4): calls 1 and 15 stop during a skip, call 3 just after one. Another CPU's rounding may move
# the later skip; the test holds wherever it falls.
FP16_RUN = dict(max_tokens=60, accumulate=2, max_steps=8, eval_every=4, log_every=1, dropout=0.2)


@pytest.mark.parametrize("call", [1, 3, 15])
def test_an_fp16_run_with_overflows_resumes_bit_identically(tmp_path, monkeypatch, call):
    pairs, valid = _pairs(40, 6, seed=1) + _pairs(20, 3, seed=2), _pairs(6, 4, seed=9)
    straight = _fp16_trainer(tmp_path / "straight", pairs, 2.0**20, 2, valid_pairs=valid, **FP16_RUN)
    straight.train()
    assert straight.state.overflow_skips >= 1  # the run has skips to get right
    first = _fp16_trainer(tmp_path / "resumed", pairs, 2.0**20, 2, valid_pairs=valid, **FP16_RUN)
    _stop_at_call(monkeypatch, first, call)
    assert first.train()["interrupted"] == "test stop"
    monkeypatch.undo()
    second = _trainer(tmp_path / "resumed", pairs, valid, precision="fp16", **FP16_RUN)  # a default scaler
    torch.manual_seed(12345)
    assert second.resume() and second.scaler.get_scale() == first.scaler.get_scale()
    second.train()
    _assert_same_run(second, straight)
    assert second.scaler.state_dict() == straight.scaler.state_dict()


# ---- the fused output layer + loss under autocast -------------------------------------------------
def _loss_inputs(weight_scale=0.3):
    g = torch.Generator().manual_seed(0)
    n, d, v = 300, 32, 50  # 300 positions: three blocks of 128 rows
    hidden = torch.randn(n, d, generator=g)
    weight = (torch.randn(v, d, generator=g) * weight_scale).requires_grad_()
    bias = torch.randn(v, generator=g).requires_grad_()
    target = torch.randint(0, v, (n,), generator=g)
    target[::7] = 0  # padding
    return hidden, weight, bias, target


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_the_fused_loss_under_autocast_matches_the_fp32_loss(dtype, tol):
    """Gradients in the parameters' dtype (fp32) and the hidden states'; values within the dtype's rounding
    (measured: 0.3% bf16, 0.05% fp16, normwise) of the unfused loss in fp32."""
    hidden, weight, bias, target = _loss_inputs()
    layer = torch.nn.Linear(32, 32)
    x = hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        h = layer(x)
        h.retain_grad()
        out = linear_label_smoothed_loss(h, weight, bias, target, 0.1, 0, chunk=128)
    assert h.dtype is dtype and out.loss.dtype is torch.float32
    out.loss.backward()
    assert h.grad.dtype is dtype and weight.grad.dtype is bias.grad.dtype is layer.weight.grad.dtype is torch.float32
    fused = [t.grad.clone() for t in (weight, bias, x, layer.weight)]
    for t in (weight, bias, x, layer.weight):
        t.grad = None
    ref = label_smoothed_loss(torch.nn.functional.linear(layer(x), weight, bias), target, 0.1, 0)  # fp32
    ref.loss.backward()
    assert abs(out.loss.item() - ref.loss.item()) < tol * abs(ref.loss.item())
    assert abs(out.nll.item() - ref.nll.item()) < tol * abs(ref.nll.item())
    for got, t in zip(fused, (weight, bias, x, layer.weight), strict=True):
        assert torch.linalg.norm(got - t.grad) < tol * torch.linalg.norm(t.grad)


def test_the_fused_loss_applies_a_loss_scale_beyond_fp16s_range_in_fp32():
    """fp16's scaler over few target tokens sends a gradient of scale / tokens > 65504 (fp16's largest) into
    the loss: the fp16 gradient of the hidden states is that times small numbers, finite, exactly scaled."""
    hidden, weight, bias, target = _loss_inputs(weight_scale=0.01)
    grads = []
    for scale in (1.0, 2.0**17):
        h = hidden.half().requires_grad_()
        with torch.autocast("cpu", dtype=torch.float16):
            out = linear_label_smoothed_loss(h, weight, bias, target, 0.1, 0, chunk=128)
        (out.loss * scale).backward()
        grads.append(h.grad)
    assert grads[1].dtype is torch.float16 and torch.isfinite(grads[1]).all()
    assert 0 < grads[0].abs().max().item() < 65504 / 2.0**17  # the scaled gradient fits fp16
    assert torch.equal(grads[1].float(), grads[0].float() * 2.0**17)
    assert math.isfinite(out.loss.item())
