"""Gradient checkpointing per layer: the same gradients, fewer saved activations."""

from __future__ import annotations

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.models.bert.model import EncoderOnly, EncoderOnlyConfig
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig
from tformer.models.vit.model import VisionConfig, VisionTransformer
from tformer.nn.gradient_checkpointing import set_gradient_checkpointing


def _translation():
    model = Transformer(TransformerConfig.tiny(dropout=0.2, attention_dropout=0.1, activation_dropout=0.1))
    src = torch.randint(4, 64, (3, 11), generator=torch.Generator().manual_seed(1))
    src[0, 8:] = 0  # padding
    tgt = torch.randint(4, 64, (3, 9), generator=torch.Generator().manual_seed(2))
    return model, lambda m: m(src, tgt).square().mean()


def _lm():
    model = DecoderOnly(DecoderOnlyConfig.tiny(dropout=0.2, attention_dropout=0.1))
    ids = torch.randint(4, 64, (3, 13), generator=torch.Generator().manual_seed(3))
    return model, lambda m: m(ids).square().mean()


def _encoder():
    model = EncoderOnly(EncoderOnlyConfig.tiny(dropout=0.2, attention_dropout=0.1))
    ids = torch.randint(4, 64, (3, 10), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return model, lambda m: m(ids, mask).square().mean()


def _vit():
    model = VisionTransformer(VisionConfig(d_model=32, num_heads=4, d_ff=64, num_layers=2, dropout=0.2,
                                           attention_dropout=0.1, num_classes=0))
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    return model, lambda m: m(images).square().mean()


MODELS = {"translation": _translation, "decoder-only": _lm, "encoder-only": _encoder, "vit": _vit}


def _grads(model, loss_fn, seed: int = 0) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in both runs
    loss_fn(model).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_checkpointing_leaves_the_gradients_unchanged_with_dropout_on(name):
    torch.manual_seed(0)
    model, loss_fn = MODELS[name]()
    model.train()
    plain = _grads(model, loss_fn)
    assert set_gradient_checkpointing(model) >= 1
    checkpointed = _grads(model, loss_fn)
    assert plain.keys() == checkpointed.keys() and plain
    for n in plain:
        torch.testing.assert_close(checkpointed[n], plain[n], rtol=1e-6, atol=1e-7, msg=n)
    # dropout really was on: another seed gives other gradients (so the equality above is not vacuous)
    other = _grads(model, loss_fn, seed=1)
    assert any(not torch.allclose(other[n], plain[n]) for n in plain)


def _saved_bytes(model, loss_fn) -> int:
    """Bytes of the tensors autograd keeps for backward outside any checkpointed layer."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model)
    loss.backward()
    return total


@pytest.mark.parametrize("name", MODELS)
def test_checkpointing_keeps_fewer_activations(name):
    torch.manual_seed(0)
    model, loss_fn = MODELS[name]()
    model.train()
    plain = _saved_bytes(model, loss_fn)
    set_gradient_checkpointing(model)
    checkpointed = _saved_bytes(model, loss_fn)
    assert checkpointed < 0.6 * plain, (checkpointed, plain)


def test_checkpointing_is_off_in_eval_and_without_gradients():
    torch.manual_seed(0)
    model, loss_fn = _translation()
    set_gradient_checkpointing(model)
    model.eval()
    with torch.no_grad():
        a = loss_fn(model)
    set_gradient_checkpointing(model, False)
    with torch.no_grad():
        b = loss_fn(model)
    assert torch.equal(a, b)


def test_a_model_without_stacks_is_refused():
    with pytest.raises(ValueError, match="no layer stack"):
        set_gradient_checkpointing(torch.nn.Linear(2, 2))
