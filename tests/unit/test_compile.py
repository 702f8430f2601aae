"""train.compile: torch.compile traces the model (the fused output layer + loss runs between its graphs as written)
and gives the eager loss and gradients; when compiling fails, training goes on eagerly with a one-line warning.

(Weights after Adam steps are not compared: Adam's first step moves every weight by about ±lr whatever the
size of its gradient, so gradients that are 0 up to rounding, which any change of summation order flips,
move weights by ±lr.)"""

import json

import pytest
import torch
from test_trainer import _pairs, _trainer

import tformer.training.task_loss as loss_module
from tformer.training.task_loss import TaskLoss


# The trainers hold a 1+1-layer model: TorchDynamo traces each layer anew, and one of each kind shows the same
# (the inductor test, slow, compiles the 2+2-layer tiny model)
def _loss_and_grads(trainer, loss_fn):
    batch = trainer.task.collate("train", trainer.sampler.batches_for_epoch(0)[0], trainer.model)
    trainer.model.zero_grad(set_to_none=True)
    out = loss_fn(batch)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def _assert_same_as_eager(trainer):
    compiled, grads = _loss_and_grads(trainer, trainer.loss_fn)
    eager, eager_grads = _loss_and_grads(trainer, TaskLoss(trainer.task, trainer.model, trainer.tc.label_smoothing))
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-5, atol=1e-5)
    assert compiled.num_tokens == eager.num_tokens
    assert grads.keys() == eager_grads.keys()
    scale = max(float(g.abs().max()) for g in eager_grads.values())
    for name, g in eager_grads.items():
        if name.endswith("k_proj.bias"):  # softmax ignores a shift of the scores: its gradient is 0 + rounding
            assert float(grads[name].abs().max()) < 1e-5 * scale
            continue
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()) + 1e-9, msg=name)


def _with_backend(monkeypatch, backend, seen):
    real = torch.compile

    def compile_(module, backend=None):
        seen.append(backend)
        return real(module, backend=backend_)

    backend_ = backend
    monkeypatch.setattr(loss_module.torch, "compile", compile_)


def test_the_compiled_loss_gives_the_eager_loss_and_gradients(tmp_path, monkeypatch):
    # aot_eager: TorchDynamo's graph capture and AOTAutograd's joint forward-backward graph, without
    # generating C++ (inductor takes about a minute on this CPU: the slow test below)
    seen = []
    _with_backend(monkeypatch, "aot_eager", seen)
    trainer = _trainer(tmp_path, _pairs(12, 5), max_tokens=24, max_steps=3, layers=1, compile=True)
    _assert_same_as_eager(trainer)
    assert seen == ["inductor"] and trainer.loss_fn.failed is None


def test_the_compiler_traces_the_model_and_leaves_the_fused_loss_as_written(tmp_path, monkeypatch):
    """torch 2.11's compiler made wrong gradients of the fused output layer + loss (an autograd function that
    writes gradients in place inside forward): compiled training on a GPU did not learn. The compiled graphs hold
    the model; the loss runs between them as written (and is still differentiated: the test above)."""
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return gm.forward

    _with_backend(monkeypatch, recording_backend, [])
    trainer = _trainer(tmp_path, _pairs(12, 5), max_tokens=24, max_steps=3, layers=1, compile=True)
    out, grads = _loss_and_grads(trainer, trainer.loss_fn)
    assert graphs and any("scaled_dot_product_attention" in str(g) for g in graphs)  # the model was compiled
    assert not any("autograd_function_apply" in target for g in graphs for target in g)
    assert trainer.loss_fn.failed is None and out.num_tokens > 0 and grads


def test_compiled_training_runs_and_logs_the_eager_losses(tmp_path, monkeypatch):
    _with_backend(monkeypatch, "aot_eager", [])
    pairs = _pairs(12, 5)
    eager = _trainer(tmp_path / "eager", pairs, max_tokens=24, max_steps=3, layers=1)
    eager.train()
    compiled = _trainer(tmp_path / "compiled", pairs, max_tokens=24, max_steps=3, layers=1, compile=True)
    assert compiled.train()["steps"] == 3 and compiled.loss_fn.failed is None

    def losses(t):
        return [json.loads(line)["loss"] for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]

    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-4)


def test_a_compiler_failure_falls_back_to_eager(tmp_path, monkeypatch, capsys):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    _with_backend(monkeypatch, broken_backend, [])
    pairs = _pairs(12, 5)
    eager = _trainer(tmp_path / "eager", pairs, max_tokens=24, max_steps=3, layers=1)
    eager.train()
    fallback = _trainer(tmp_path / "fallback", pairs, max_tokens=24, max_steps=3, layers=1, compile=True)
    fallback.train()
    assert "no compiler here" in fallback.loss_fn.failed
    assert "torch.compile failed" in capsys.readouterr().err
    a, b = dict(eager.model.named_parameters()), dict(fallback.model.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)  # the fallback is the eager module itself


@pytest.mark.slow
def test_the_inductor_compiled_loss_gives_the_eager_loss_and_gradients(tmp_path):
    """The real compiler: C++ code generation on the CPU."""
    trainer = _trainer(tmp_path, _pairs(12, 5), max_tokens=24, max_steps=3, compile=True)
    _assert_same_as_eager(trainer)
    assert trainer.loss_fn.failed is None
