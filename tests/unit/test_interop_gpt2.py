"""The outside oracle for the decoder-only model: Hugging Face's GPT-2 with the same (random) weights gives the
same logits, padded or not, the same loss, and the same greedy continuations; mismatched weights fail in one line."""

import ast
import inspect

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model  # noqa: E402

from tformer.config import ConfigError  # noqa: E402
from tformer.interop.gpt2 import from_hf_gpt2  # noqa: E402
from tformer.models.gpt.model import perplexity  # noqa: E402

V, EOS = 97, 96  # GPT-2's layout: the last id is <|endoftext|>, both BOS and EOS; no padding token


def _gpt2(cls=GPT2LMHeadModel, **kw):
    base = dict(vocab_size=V, n_positions=48, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=EOS, eos_token_id=EOS)
    torch.manual_seed(0)
    model = cls(GPT2Config(**{**base, **kw})).eval()
    with torch.no_grad():  # random values everywhere (LayerNorms and biases too), so that a wrong mapping shows
        for p in model.parameters():
            p.normal_(0.0, 0.15)
        ln_f = model.ln_f if cls is GPT2Model else model.transformer.ln_f
        ln_f.weight.normal_(0.0, 2.0)  # spread the logits: few near-ties for greedy
    return model


def _ids(b=3, t=20, seed=1):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [{}, {"n_inner": 48, "activation_function": "gelu_pytorch_tanh"},
                                {"activation_function": "relu", "tie_word_embeddings": False}])
def test_same_weights_same_logits_padded_or_not(kw):
    hf = _gpt2(**kw)
    ours = from_hf_gpt2(hf).eval()
    assert ours.cfg.tie_output == (kw.get("tie_word_embeddings", True))
    assert ours.cfg.pad_id is None and ours.cfg.bos_id == ours.cfg.eos_id == EOS
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, 12:], mask[2, 5:] = 0, 0  # right padding
    with torch.no_grad():
        ref, out = hf(ids).logits, ours(ids)
        ref_pad, out_pad = hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask)
    diff, diff_pad = (out - ref).abs().max().item(), (out_pad - ref_pad)[mask.bool()].abs().max().item()
    assert ref.abs().max() > 1.0  # not a trivially small comparison
    assert diff < 1e-5 and diff_pad < 1e-5, (diff, diff_pad)


def test_gpt2_model_without_a_head_gives_the_same_hidden_states():
    hf = _gpt2(GPT2Model)
    ours = from_hf_gpt2(hf).eval()
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(ours.hidden_states(ids), hf(ids).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_perplexity_is_exp_of_the_transformers_loss():
    hf = _gpt2()
    ours = from_hf_gpt2(hf)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        full, padded = hf(ids, labels=ids).loss.exp().item(), hf(ids, attention_mask=mask, labels=labels).loss.exp()
    assert perplexity(ours, ids) == pytest.approx(full, rel=1e-5)
    assert perplexity(ours, ids, mask) == pytest.approx(padded.item(), rel=1e-5)


def test_greedy_continuations_match_transformers_generate_with_left_padding():
    hf = _gpt2()
    ours = from_hf_gpt2(hf)
    prompts = [_ids(1, n, seed=n)[0] for n in (7, 3, 5)]
    width = 7
    left = torch.full((3, width), EOS)  # transformers wants left padding
    left_mask = torch.zeros(3, width, dtype=torch.long)
    right = torch.full((3, width), 5)  # ours takes either side; right here, to show it
    right_mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        left[i, width - len(p) :], left_mask[i, width - len(p) :] = p, 1
        right[i, : len(p)], right_mask[i, : len(p)] = p, 1
    with torch.no_grad():
        ref = hf.generate(left, attention_mask=left_mask, do_sample=False, max_new_tokens=8, pad_token_id=EOS)
    out = ours.generate(right, max_new_tokens=8, attention_mask=right_mask)
    ref = ref[:, width:]
    assert torch.equal(out, ref[:, : out.shape[1]]) and torch.all(ref[:, out.shape[1] :] == EOS)
    assert len({tuple(r) for r in out.tolist()}) == 3  # distinct prompts, distinct continuations


def test_a_misshapen_or_missing_tensor_fails_in_one_line_naming_it():
    hf = _gpt2()
    with torch.no_grad():
        hf.transformer.h[1].mlp.c_fc.weight = torch.nn.Parameter(torch.zeros(128, 32))  # transposed by mistake
    with pytest.raises(ConfigError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight has shape \(128, 32\), "
                                          r"expected \(32, 128\)") as e:
        from_hf_gpt2(hf)
    assert "\n" not in str(e.value)
    hf = _gpt2()
    hf.transformer.h[0].ln_2 = torch.nn.Identity()
    with pytest.raises(ConfigError, match=r"no transformer\.h\.0\.ln_2\.weight$") as e:
        from_hf_gpt2(hf)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, words", [({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
                                       ({"activation_function": "quick_gelu"}, "activation 'quick_gelu'")])
def test_unsupported_gpt2_variants_fail_in_one_line(kw, words):
    with pytest.raises(ConfigError, match=words) as e:
        from_hf_gpt2(_gpt2(**kw))
    assert "\n" not in str(e.value)


def test_the_mapping_imports_transformers_only_when_the_caller_does():
    import tformer.interop.gpt2 as mapping
    import tformer.models.gpt.model as model

    for module in (mapping, model):
        tree = ast.parse(inspect.getsource(module))
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "transformers"], module.__name__
