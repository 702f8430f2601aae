"""The copy mechanism (pointer-generator): a distribution that sums to one, the right mixture at the gate's
extremes, incremental decoding equal to teacher forcing, and copying of tokens never seen as targets."""

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.config import ConfigError
from tformer.tasks.translation import sequence_loss


def _model(**kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig.tiny(dropout=0.0, pointer_generator=True, **kw)).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(4, 64, (3, 9), generator=g), torch.randint(4, 64, (3, 7), generator=g)
    src[1, 6:] = 0  # padding
    return src, tgt


def test_the_output_is_a_distribution():
    model = _model()
    src, tgt = _batch()
    logp = model(src, tgt)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 7), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bias, expect", [(60.0, "vocabulary"), (-60.0, "copy")])
def test_the_gate_mixes_the_vocabulary_softmax_and_the_attention_over_source_tokens(bias, expect):
    model = _model()
    with torch.no_grad():
        model.pointer_generator.gate.weight.zero_()
        model.pointer_generator.gate.bias.fill_(bias)
    src, tgt = _batch()
    p = model(src, tgt).exp()
    if expect == "vocabulary":
        model.pointer_generator = None  # the plain model: logits -> softmax
        torch.testing.assert_close(p, model(src, tgt).softmax(-1), rtol=1e-5, atol=1e-6)
        return
    _, maps = model(src, tgt, need_weights=True)
    a = maps.decoder_cross[-1].mean(1)  # (B, T, S) the last layer's heads averaged
    oracle = torch.zeros_like(p)
    for b in range(3):
        for i in range(src.shape[1]):
            oracle[b, :, src[b, i]] += a[b, :, i]  # each source position's weight goes to its token
    torch.testing.assert_close(p, oracle, rtol=1e-5, atol=1e-6)
    assert float(p[1, :, 0].max().detach()) < 1e-20  # padding is never copied (what is left: p_gen = sigmoid(-60))


def test_incremental_decoding_equals_teacher_forcing_and_generation_runs():
    model = _model()
    src, tgt = _batch()
    whole = model(src, tgt)
    cache = model.start_decoding(model.encode(src), src)
    steps = torch.cat([model.decode_step(tgt[:, i:i + 1], cache) for i in range(tgt.shape[1])], dim=1)
    torch.testing.assert_close(steps, whole, rtol=1e-5, atol=1e-5)
    assert model.generate(src, beam_size=1).shape[0] == 3
    assert model.generate(src, beam_size=3).shape[0] == 3  # beams reorder the cache, source ids included


def test_the_loss_trains_through_the_mixture_and_the_config_round_trips(tmp_path):
    model = _model()
    src, tgt = _batch()
    out = sequence_loss(model.train(), src, tgt, tgt, 0.1)
    out.loss.backward()
    assert model.pointer_generator.gate.weight.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path)
    loaded = Transformer.from_pretrained(tmp_path).eval()
    assert loaded.cfg.pointer_generator
    torch.testing.assert_close(loaded(src, tgt), model(src, tgt))


def test_a_pointer_generator_copies_tokens_it_never_produced_in_training():
    """Train on copying tokens 4..39 (150 updates), then give it tokens 40..63, never targets. Without the copy
    path their output embeddings were only ever pushed down, and none comes out; with it, measured: 45% of
    them come out right (the gate has not learned to trust copying fully on unseen inputs), and 100% of seen
    tokens in both models."""
    def train(pointer):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig.tiny(dropout=0.0, pointer_generator=pointer, d_model=32))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(2)
        for _ in range(150):
            x = torch.randint(4, 40, (32, 6), generator=g)
            src, tgt_in, tgt_out = x, torch.cat([torch.ones(32, 1, dtype=torch.long), x], 1), \
                torch.cat([x, torch.full((32, 1), 2)], 1)
            opt.zero_grad()
            out = sequence_loss(model, src, tgt_in, tgt_out, 0.0)
            (out.loss / out.num_tokens).backward()
            opt.step()
        x = torch.randint(40, 64, (64, 6), generator=g)
        return (model.eval().generate(x, max_len=7)[:, :6] == x).float().mean().item()

    assert train(True) > 0.3 and train(False) < 0.02


def test_copying_needs_one_vocabulary():
    with pytest.raises(ConfigError, match="needs one shared vocabulary"):
        TransformerConfig.tiny(pointer_generator=True, tgt_vocab_size=70, share_embeddings=False)
