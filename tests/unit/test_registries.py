"""The registries of parts: attention algorithms, positional schemes and norms are found by the config's name,
agree with what the configs accept, and a new attention algorithm is one class plus one registration."""

import pytest
import torch

import tformer.config
from tformer import Transformer, TransformerConfig
from tformer.config import ATTENTION_KINDS, NORM_TYPES, AttentionConfig, ConfigError
from tformer.models.transformer.config import POSITIONAL
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.attention_algorithms import (
    ATTENTION_ALGORITHMS,
    AttentionAlgorithm,
    attention_reference,
    causal_attention_config,
    cross_attention_config,
    register_attention,
    registry,
)
from tformer.nn.norms import NORMS, build_norm
from tformer.nn.positional import POSITIONAL_SCHEMES, PositionSpec, RelativePositionBias, build_positions


def test_the_configs_accept_exactly_the_registered_names():
    assert set(ATTENTION_ALGORITHMS) == set(ATTENTION_KINDS)
    assert set(POSITIONAL_SCHEMES) == set(POSITIONAL)
    assert set(NORMS) == set(NORM_TYPES)
    assert {k for k, cls in ATTENTION_ALGORITHMS.items() if cls.same_as_full} == {"full", "reference", "chunked"}


def test_the_config_validation_agrees_with_what_each_algorithm_declares():
    for kind, cls in ATTENTION_ALGORITHMS.items():
        relative = TransformerConfig.tiny(attention={"kind": kind}).replace
        if cls.takes_score_bias:
            relative(positional="relative")
        else:
            with pytest.raises(ConfigError, match="relative positions need full or chunked"):
                relative(positional="relative")


@pytest.mark.parametrize("kind, causal, cross", [
    ("full", "full", None), ("reference", "reference", "reference"), ("chunked", "chunked", "chunked"),
    ("sliding", "sliding", None), ("linformer", None, None), ("lsh", None, None),
])
def test_a_decoder_next_to_each_kind_takes_it_where_the_kind_allows(kind, causal, cross):
    """The decoder's masked self-attention keeps the kind where it can be causal; encoder-decoder attention keeps
    it where it serves cross-attention; None = full (the layer's default)."""
    cfg = AttentionConfig(kind=kind)
    assert (None if causal_attention_config(cfg) is None else causal_attention_config(cfg).kind) == causal
    assert (None if cross_attention_config(cfg) is None else cross_attention_config(cfg).kind) == cross


def test_a_layer_registers_its_algorithm_under_the_kinds_name():
    mha = MultiHeadAttention(16, 2, attention=AttentionConfig(kind="linformer", linformer_k=4), max_len=8)
    assert mha.algorithm is mha.linformer and sorted(n for n, _ in mha.named_parameters() if "linformer" in n) == [
        "linformer.E", "linformer.F"]
    assert type(MultiHeadAttention(16, 2).algorithm) is ATTENTION_ALGORITHMS["full"]


@pytest.mark.parametrize("kind", [k for k, cls in ATTENTION_ALGORITHMS.items() if cls.same_as_full])
def test_the_kinds_that_declare_the_full_model_are_it(kind):
    """The reference (written out) and chunked kinds declare ``same_as_full``: the same logits and translations."""
    src, tgt = torch.randint(4, 60, (2, 9)), torch.randint(4, 60, (2, 7))
    src[1, -3:] = 0
    outs = []
    for each in ("full", kind):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig.tiny(attention={"kind": each, "chunk_size": 4},
                                                   positional="relative")).eval()
        outs.append((model(src, tgt), model.generate(src, beam_size=2, max_len=8)))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    assert torch.equal(outs[1][1], outs[0][1])


def test_a_new_algorithm_is_one_class_and_one_registration(monkeypatch):
    """The worked example of "adding an attention algorithm": Eq. 1 with the scores' temperature doubled."""

    class HotAttention(AttentionAlgorithm):
        name = "hot"

        def forward(self, q, k, v, mask, *, scale=None, **options):
            return self.with_weights(q, k, v, mask, scale=scale, **options)[0]

        def with_weights(self, q, k, v, mask, *, scale=None, **options):
            scale = 2.0 * (q.shape[-1] ** -0.5 if scale is None else scale)
            return attention_reference(q, k, v, mask, scale=scale, **options)

    monkeypatch.setattr(tformer.config, "ATTENTION_KINDS", (*ATTENTION_KINDS, "hot"))  # the config's validation
    monkeypatch.setattr(registry, "ATTENTION_ALGORITHMS", ATTENTION_ALGORITHMS.copy())  # the test's own registry
    register_attention(HotAttention)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(dropout=0.0, attention={"kind": "hot"})).eval()
    assert isinstance(model.encoder.layers[0].self_attn.algorithm, HotAttention)
    assert isinstance(model.decoder.layers[0].self_attn.algorithm, HotAttention)  # it can be causal (the default)
    src, tgt = torch.randint(4, 60, (2, 9)), torch.randint(4, 60, (2, 7))
    logits, maps = model(src, tgt, need_weights=True)
    layer = model.encoder.layers[0].self_attn
    x = model.encoder.embed(src)
    q = layer._split_heads(layer.q_proj(x))
    k = layer._split_heads(layer.k_proj(x))
    hot = (q @ k.transpose(-2, -1) * 2 * layer.d_head**-0.5).masked_fill(src[:, None, None, :] == 0, -torch.inf)
    torch.testing.assert_close(maps.encoder[0], hot.softmax(-1))
    cache = model.start_decoding(model.encode(src), src)
    steps = torch.cat([model.decode_step(tgt[:, i:i + 1], cache) for i in range(7)], dim=1)
    torch.testing.assert_close(steps, logits, rtol=1e-5, atol=1e-5)


def test_positional_schemes_build_a_stacks_absolute_or_relative_part():
    spec = PositionSpec(max_len=16, d_model=8, num_heads=2, relative_buckets=8, bidirectional=False)
    assert build_positions("relative", spec).absolute is None
    assert isinstance(build_positions("relative", spec).score_bias, RelativePositionBias)
    assert build_positions("sinusoidal", spec).absolute(3, 2).shape == (3, 8)
    assert build_positions("learned", spec).score_bias is None
    with pytest.raises(ValueError, match="positional must be one of"):
        build_positions("rotary", spec)


def test_norms_are_found_by_name():
    assert isinstance(build_norm("rms", 8, 1e-6), torch.nn.RMSNorm)
    assert isinstance(build_norm("layer", 8, 1e-5), torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="norm_type must be one of"):
        build_norm("batch", 8, 1e-5)


def test_every_registry_refuses_a_name_twice_and_names_the_known_ones_for_an_unknown_one():
    from tformer.registry import Registry
    from tformer.tasks.registry import TASKS

    for reg, what in [(ATTENTION_ALGORITHMS, "attention kind"), (POSITIONAL_SCHEMES, "positional"),
                      (NORMS, "norm_type"), (TASKS, "task")]:
        assert isinstance(reg, Registry) and reg.what == what
        name = next(iter(reg))
        with pytest.raises(ValueError, match=f"^{what} '{name}' is registered twice"):
            reg.copy().add(name, reg[name])
        with pytest.raises(ConfigError, match=rf"^{what} must be one of \({', '.join(map(repr, reg))},?\), got 'x'$"):
            reg.lookup("x")
