"""A restricted output vocabulary (``output_vocab``): the model scores only some target tokens (a translation run's:
the subwords of its training targets), every other logit is -inf, and the fused loss computes only those rows."""

import pytest
import torch
import torch.nn.functional as F

from tformer import Transformer, TransformerConfig
from tformer.config import ConfigError
from tformer.tasks.translation import sequence_loss

V, PAD, BOS, EOS, UNK = 40, 0, 1, 2, 3
SCORED = torch.tensor([PAD, EOS, UNK] + list(range(5, 40, 2)))  # 21 of 40: pad, EOS, UNK and the odd ids from 5


def pair(dtype=torch.float64, scored=SCORED, seed=0):
    """A restricted tiny model and an unrestricted one with the same weights."""
    torch.manual_seed(seed)
    full = Transformer(TransformerConfig.tiny(vocab_size=V, dropout=0.0)).to(dtype).eval()
    part = Transformer(TransformerConfig.tiny(vocab_size=V, dropout=0.0, output_vocab=len(scored))).to(dtype).eval()
    missing, unexpected = part.load_state_dict(full.state_dict(), strict=False)
    assert missing == ["output_ids"] and not unexpected
    part.set_output_ids(scored)
    return part, full


def batch(seed=1, targets=SCORED):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (3, 7), generator=g)  # (B, S)
    tgt = targets[torch.randint(1, len(targets), (3, 6), generator=g)]  # (B, T) scored non-pad tokens
    tgt[2, 4:] = PAD
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt[:, :-1]], dim=1)
    return src, tgt_in, tgt


def test_the_scored_tokens_logits_are_the_full_models_and_the_others_are_minus_inf():
    part, full = pair()
    src, tgt_in, _ = batch()
    with torch.no_grad():
        a, b = part(src, tgt_in), full(src, tgt_in)  # (B, T, V)
    outside = torch.ones(V, dtype=torch.bool)
    outside[SCORED] = False
    assert torch.equal(a[..., SCORED], b[..., SCORED])
    assert bool((a[..., outside] == float("-inf")).all())
    assert torch.equal(part.scored_tokens(), ~outside)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_loss_is_label_smoothed_cross_entropy_over_the_scored_tokens_with_its_gradients(eps):
    """Outside oracle: log_softmax over the scored columns of the full model's logits, q over them (float64)."""
    part, full = pair()
    part.train()
    full.train()  # dropout 0: training mode changes nothing but grad flow
    src, tgt_in, tgt = batch()
    out = sequence_loss(part, src, tgt_in, tgt, eps)
    out.loss.backward()
    logp = F.log_softmax(full(src, tgt_in)[..., SCORED], dim=-1).reshape(-1, len(SCORED))  # (N, V')
    pos = torch.searchsorted(SCORED, tgt.reshape(-1))  # gold positions among the scored tokens
    q = torch.full_like(logp, eps / (len(SCORED) - 2))  # (N, V') eps over the scored tokens but gold and pad
    q[:, int(torch.searchsorted(SCORED, torch.tensor(PAD)))] = 0.0
    q.scatter_(1, pos[:, None], 1.0 - eps)
    q[tgt.reshape(-1) == PAD] = 0.0
    want = -(q * logp).sum()
    want.backward()
    torch.testing.assert_close(out.loss, want, rtol=1e-12, atol=1e-12)
    real = tgt.reshape(-1) != PAD
    torch.testing.assert_close(out.nll, F.nll_loss(logp[real], pos[real], reduction="sum"), rtol=1e-12, atol=1e-12)
    assert out.num_tokens == int(real.sum())
    grads = dict(full.named_parameters())
    for name, p in part.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-9, atol=1e-12, msg=name)


def test_with_every_token_scored_the_loss_and_gradients_are_the_unrestricted_models():
    part, full = pair(scored=torch.arange(V))
    part.train()
    full.train()
    src, tgt_in, tgt = batch(targets=torch.arange(V))
    a, b = sequence_loss(part, src, tgt_in, tgt, 0.1), sequence_loss(full, src, tgt_in, tgt, 0.1)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-12, atol=1e-12)
    grads = dict(full.named_parameters())
    for name, p in part.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-9, atol=1e-12, msg=name)


def test_a_gold_token_outside_the_scored_ones_counts_as_unk():
    part, _ = pair()
    src, tgt_in, tgt = batch()
    outside = tgt.clone()
    outside[0, 1], outside[1, 3] = 4, 38  # even ids: not scored
    as_unk = outside.clone()
    as_unk[0, 1] = as_unk[1, 3] = UNK
    with torch.no_grad():
        a, b = sequence_loss(part, src, tgt_in, outside, 0.1), sequence_loss(part, src, tgt_in, as_unk, 0.1)
    assert torch.isfinite(a.loss) and a.num_tokens == b.num_tokens
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)


def test_generation_never_produces_a_token_the_model_does_not_score():
    part, full = pair(dtype=torch.float32)
    with torch.no_grad():  # make the unscored even ids the likeliest outputs of the unrestricted model
        for m in (part, full):
            m.output_projection.weight[6:40:2] += 3 * m.output_projection.weight[6:40:2].sign()
    src = torch.randint(4, V, (4, 6), generator=torch.Generator().manual_seed(3))
    outside = ~part.scored_tokens()
    assert bool(outside[full.generate(src, beam_size=1, max_len=12)].any())  # the test can fail
    for settings in (dict(beam_size=1), dict(beam_size=4), dict(do_sample=True, seed=1, temperature=2.0)):
        out = part.generate(src, max_len=12, **settings)
        assert not bool(outside[out].any()), settings


def test_a_saved_model_keeps_its_scored_tokens(tmp_path):
    part, _ = pair(dtype=torch.float32)
    part.save_pretrained(tmp_path)
    back = Transformer.from_pretrained(tmp_path)
    assert back.cfg.output_vocab == len(SCORED) and torch.equal(back.output_ids, SCORED)
    src, tgt_in, _ = batch()
    with torch.no_grad():
        assert torch.equal(back(src, tgt_in), part(src, tgt_in))
    assert "output_vocab" not in TransformerConfig.tiny(vocab_size=V).saved_dict()  # older folders load as before


@pytest.mark.parametrize("ids, match", [
    (torch.tensor([PAD, EOS, UNK, 7, 5]), "ascending"),
    (torch.tensor([PAD, UNK, 5, 7, 9]), "EOS"),
    (torch.tensor([PAD, EOS, UNK, 5]), "got 4 ids"),
    (torch.tensor([PAD, EOS, UNK, 5, 40]), "inside"),
])
def test_set_output_ids_refuses_ids_it_cannot_score_with(ids, match):
    model = Transformer(TransformerConfig.tiny(vocab_size=V, output_vocab=5))
    with pytest.raises(ValueError, match=match):
        model.set_output_ids(ids)


def test_the_config_checks_output_vocab():
    with pytest.raises(ConfigError, match="output_vocab"):
        TransformerConfig.tiny(vocab_size=V, output_vocab=V + 1)
    with pytest.raises(ConfigError, match="pointer_generator"):
        TransformerConfig.tiny(vocab_size=V, output_vocab=10, pointer_generator=True)
