"""The Swin Transformer: its windows and shift mask, its configuration, its models, the vision task's Swin preset,
and the outside oracle, Hugging Face's SwinModel and SwinForImageClassification with the same weights."""

from types import SimpleNamespace

import pytest
import torch

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.interop.swin import from_hf_swin
from tformer.models.registry import load_pretrained
from tformer.models.swin.config import SwinConfig
from tformer.models.swin.model import SwinClassifier, SwinTransformer
from tformer.models.swin.windows import (
    cyclic_shift,
    relative_position_index,
    shift_mask,
    window_and_shift,
    window_partition,
    window_reverse,
)
from tformer.nn.drop_path import DropPath


def _cfg(**kw) -> SwinConfig:
    base = dict(image_size=16, patch_size=2, num_channels=1, embed_dim=8, depths=(2, 2), num_heads=(2, 2),
                window_size=4, mlp_ratio=2.0, dropout=0.0, drop_path_rate=0.0, num_classes=3)
    return SwinConfig(**{**base, **kw})


# ---- windows -----------------------------------------------------------------------------------
def test_window_partition_then_reverse_is_the_identity():
    x = torch.randn(2, 8, 12, 3)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 6, 16, 3)
    assert torch.equal(windows[1], x[0, :4, 4:8].reshape(16, 3))  # image 0, window row 0, column 1, row-major
    assert torch.equal(windows[6], x[1, :4, :4].reshape(16, 3))
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)
    assert torch.equal(cyclic_shift(cyclic_shift(x, 2), 2, reverse=True), x)


@pytest.mark.parametrize("size, m, s", [(8, 4, 2), (12, 4, 2), (6, 3, 1), (4, 2, 1)])
def test_the_shift_mask_keeps_exactly_the_regions_of_the_shifted_window(size, m, s):
    """Brute force: after rolling by -s, the token at rolled (i, j) came from (i + s, j + s) mod size; two tokens of a
    window may attend to each other exactly when, on the unrolled map, they are in the same window of the
    partition displaced by s (windows [s + kM, s + (k + 1)M), cut at the border: floor((i - s) / M))."""
    rolled = torch.arange(size)
    origin = (rolled + s) % size  # rolled index -> original index
    block = torch.div(origin - s, m, rounding_mode="floor")  # (size,): the displaced window along one axis
    labels = torch.stack(torch.meshgrid(block, block, indexing="ij"), dim=-1)  # (size, size, 2)
    per_window = window_partition(labels[None].float(), m)  # (nW, N, 2)
    expected = (per_window[:, :, None, :] == per_window[:, None, :, :]).all(-1)  # (nW, N, N)
    mask = shift_mask(size, size, m, s)
    assert mask.dtype == torch.bool and mask.shape == expected.shape
    assert torch.equal(mask, expected)
    assert mask.diagonal(dim1=1, dim2=2).all()  # every token sees itself
    assert shift_mask(size, size, m, 0) is None


def test_relative_position_index_reads_each_offset_once():
    m = 3
    index = relative_position_index(m)
    assert index.shape == (9, 9) and set(index.unique().tolist()) == set(range((2 * m - 1) ** 2))
    ys, xs = torch.arange(9) // m, torch.arange(9) % m
    for i in range(9):
        for j in range(9):
            assert index[i, j] == (ys[i] - ys[j] + m - 1) * (2 * m - 1) + (xs[i] - xs[j] + m - 1)


def test_a_map_no_bigger_than_the_window_is_one_window_without_shift():
    assert window_and_shift(8, 4) == (4, 2) and window_and_shift(4, 7) == (4, 0) and window_and_shift(4, 4) == (4, 0)
    model = SwinTransformer(_cfg(image_size=8, window_size=7)).eval()  # maps 4x4 then 2x2
    blocks = [b for stage in model.stages for b in stage.layers]
    assert [(b.window, b.shift) for b in blocks] == [(4, 0), (4, 0), (2, 0), (2, 0)]
    assert blocks[0].attn.relative_position_bias_table.shape == ((2 * 4 - 1) ** 2, 2)  # (2M - 1)^2, M = the map
    out = model(torch.rand(2, 1, 8, 8))
    assert out.last_hidden_state.shape == (2, 4, 16) and torch.isfinite(out.last_hidden_state).all()


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    ({"num_heads": (3, 2)}, "stage 1: its width 8 must be divisible by its num_heads (3)"),
    ({"num_heads": (2,)}, "num_heads must give one count per stage (2 stages)"),
    ({"depths": ()}, "depths must name at least one stage"),
    ({"depths": (2, 0)}, "every stage needs at least one block"),
    ({"window_size": 0}, "window_size must be positive"),
    ({"mlp_ratio": 0.01}, "leaves an MLP of width 0"),
    ({"drop_path_rate": 1.0}, "drop_path_rate must be in [0, 1)"),
    ({"dropout": -0.1}, "dropout must be in [0, 1)"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"num_classes": -1}, "num_classes must be >= 0"),
])
def test_bad_config_values_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        _cfg(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_config_round_trips_and_derives_the_hierarchy(tmp_path):
    cfg = _cfg(image_size=35, depths=[2, 2, 2], num_heads=[2, 2, 4])
    assert cfg.depths == (2, 2, 2) and SwinConfig.from_dict(cfg.to_dict()) == cfg
    cfg.save_json(tmp_path / "c.json")
    assert SwinConfig.load_json(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        SwinConfig.from_dict({**cfg.to_dict(), "hidden_size": 4})
    assert cfg.stage_resolutions == (18, 9, 5) and cfg.stage_dims == (8, 16, 32) and cfg.num_features == 32


# ---- the model ---------------------------------------------------------------------------------
def test_stochastic_depth_rises_linearly_and_is_off_in_evaluation():
    cfg = _cfg(depths=(2, 3), drop_path_rate=0.4)
    model = SwinClassifier(cfg)
    rates = [b.drop_path.p for stage in model.swin.stages for b in stage.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    x = torch.rand(4, 1, 16, 16)
    still = SwinClassifier(cfg.replace(drop_path_rate=0.0))
    still.load_state_dict(model.state_dict())
    model.eval()
    still.eval()
    torch.testing.assert_close(model(x), still(x), atol=0, rtol=0)
    drop = DropPath(0.5).train()
    y = drop(torch.ones(200, 3, 2))
    kept = y.flatten(1).amax(1)
    assert set(kept.unique().tolist()) <= {0.0, 2.0} and 0.3 < (kept > 0).float().mean() < 0.7
    assert torch.equal(y, y[:, :1, :1].expand_as(y))  # a whole example is kept or dropped
    assert torch.equal(drop.eval()(y), y)


def test_an_image_does_not_depend_on_its_batch_mates_and_weights_are_per_window():
    model = SwinClassifier(_cfg(image_size=15)).eval()  # 15 px padded to 16: an 8x8 map (4 windows), then 4x4
    x = torch.rand(3, 1, 15, 15)
    logits, weights = model(x, need_weights=True)
    torch.testing.assert_close(model(x[1:2]), logits[1:2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), logits, atol=1e-5, rtol=1e-5)  # fused path = reference path
    assert [w.shape for w in weights] == [(12, 2, 16, 16)] * 2 + [(3, 2, 16, 16)] * 2
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(12, 2, 16))
    assert torch.equal(model.predict(x), logits.argmax(-1))


def test_save_and_load_round_trip(tmp_path):
    model = SwinClassifier(_cfg(image_size=12, qkv_bias=False)).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert type(loaded) is SwinClassifier and loaded.cfg == model.cfg
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(loaded.eval()(x), model(x), atol=0, rtol=0)
    names = set(model.state_dict())
    assert not any("relative_position_index" in n or "shift_mask" in n for n in names)  # recomputed, not saved
    assert not any(n.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for n in names)
    assert any(n.endswith("out_proj.bias") for n in names)
    with pytest.raises(ConfigError, match="needs num_classes >= 1"):
        SwinClassifier(_cfg(num_classes=0))
    with pytest.raises(ValueError, match=r"\(B, 1, 12, 12\)"):
        model(torch.rand(2, 1, 16, 16))


def test_the_vision_task_trains_swin_on_scaled_up_digits():
    pytest.importorskip("sklearn")
    from tformer.data.images import load_digits_splits
    from tformer.models.vit.config import VisionConfig
    from tformer.models.vit.model import VisionClassifier
    from tformer.tasks.vision import VisionTask, model_config
    from tformer.training.config import RunConfig

    m = model_config(RunConfig(task="vision", model={"preset": "digits_swin"}))
    assert m == SwinConfig.digits() and isinstance(model_config(RunConfig(task="vision", model={})), VisionConfig)
    for spec, needle in [({"preset": "digits_vit"}, "model.preset must be one of ('digits', 'digits_swin')"),
                         ({"preset": "digits_swin", "image_size": 12}, "whole multiple of the digits' side 8")]:
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            model_config(RunConfig(task="vision", model=spec))
    swin, vit = SwinClassifier(m), VisionClassifier(VisionConfig.digits())
    assert 0.9 < swin.num_parameters() / vit.num_parameters() < 1.1  # the same budget as the ViT recipe
    big = model_config(RunConfig(task="vision", model={"preset": "digits_swin", "image_size": 16, "patch_size": 4}))
    splits = load_digits_splits(seed=0)
    task = VisionTask(splits, big.num_patches, max_shift=1, scale=2, classifier=SwinClassifier)
    b = task.collate("valid", [0, 1], None)
    assert torch.equal(b.images[:, :, ::2, ::2], splits.valid.images[:2]) and b.images.shape == (2, 1, 16, 16)
    assert torch.equal(b.images[:, :, 1::2, 1::2], b.images[:, :, ::2, ::2]) and b.num_src_tokens == 32
    assert torch.isfinite(task.loss(SwinClassifier(big), task.collate("train", [0, 1, 2], None), 0.1).loss)


# ---- Hugging Face parity -----------------------------------------------------------------------
HF_TEST = dict(image_size=32, patch_size=2, num_channels=3, embed_dim=16, depths=[1, 2, 1], num_heads=[2, 2, 4],
               window_size=2)  # Hugging Face's own test configuration (SwinModelTester)
PADDED = dict(image_size=35, patch_size=2, num_channels=1, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4],
              window_size=4, layer_norm_eps=1e-6, qkv_bias=False, hidden_act="gelu_new")  # 35 px -> maps 18, 9, 5
WHOLE_MAP = dict(image_size=32, patch_size=4, num_channels=3, embed_dim=8, depths=[2, 2], num_heads=[2, 4],
                 window_size=4)  # stage 2's 4x4 map is one window, unshifted


def _hf(cls, **kw):
    from transformers import SwinConfig as HFSwinConfig

    base = dict(mlp_ratio=2.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.1,
                num_labels=5, attn_implementation="eager")
    model = cls(HFSwinConfig(**{**base, **kw}))
    with torch.no_grad():  # random values everywhere, so that a wrongly mapped LayerNorm, bias or table shows
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def _pixels(hf, batch: int = 2) -> torch.Tensor:
    c = hf.config
    return torch.randn(batch, c.num_channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kw", [HF_TEST, PADDED, WHOLE_MAP], ids=["hf-test", "padded", "whole-map"])
def test_same_weights_as_hugging_face_same_outputs(kw):
    transformers = pytest.importorskip("transformers")
    hf = _hf(transformers.SwinForImageClassification, **kw)
    ours = from_hf_swin(hf)
    assert isinstance(ours, SwinClassifier) and not ours.training
    x = _pixels(hf)
    with torch.no_grad():
        ref = hf.swin(pixel_values=x)
        out = ours.swin(x)
        torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.pooled_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x), hf(pixel_values=x).logits, atol=1e-5, rtol=1e-5)
    backbone = from_hf_swin(hf.swin)
    assert type(backbone) is SwinTransformer
    with torch.no_grad():
        torch.testing.assert_close(backbone(x).last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_older_parameter_names_are_read_and_the_index_buffer_is_not():
    transformers = pytest.importorskip("transformers")
    hf = _hf(transformers.SwinModel, **HF_TEST)
    renames = {"attention.q_proj": "attention.self.query", "attention.k_proj": "attention.self.key",
               "attention.v_proj": "attention.self.value", "attention.o_proj": "attention.output.dense",
               "attention.relative_position_bias.": "attention.self.", "mlp.fc1": "intermediate.dense",
               "mlp.fc2": "output.dense"}
    state = {}
    for name, t in hf.state_dict().items():
        for new, old in renames.items():
            name = name.replace(new, old)
        state[name] = t
        if name.endswith("relative_position_bias_table"):  # transformers 4.x saved the index: a wrong one is unread
            state[name.replace("_bias_table", "_index")] = torch.zeros(4, 4, dtype=torch.long)
    ours = from_hf_swin(SimpleNamespace(config=hf.config, state_dict=lambda: state, training=False))
    x = _pixels(hf)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).last_hidden_state, hf(pixel_values=x).last_hidden_state, atol=1e-5,
                                   rtol=1e-5)


def test_not_a_swin_bad_tensors_and_unsupported_settings_are_one_line():
    transformers = pytest.importorskip("transformers")
    hf = _hf(transformers.SwinModel, **HF_TEST)
    state = dict(hf.state_dict())

    def fake(s):
        return SimpleNamespace(config=hf.config, state_dict=lambda: s, training=False)

    name = "encoder.layers.1.blocks.1.mlp.fc1.weight"
    cases = [(torch.nn.Linear(2, 2), ("SwinModel", "Linear")),
             (fake({**state, name: state[name][:5]}), (name, "(5, 32)")),
             (fake({k: v for k, v in state.items() if not k.startswith("layernorm.")}), ("layernorm.weight",)),
             (fake({**state, "embeddings.extra": torch.zeros(1)}), ("embeddings.extra",)),
             (_hf(transformers.SwinModel, **{**HF_TEST, "use_absolute_embeddings": True}), ("absolute",)),
             (_hf(transformers.SwinModel, **{**HF_TEST, "image_size": (32, 16)}), ("square",)),
             (_hf(transformers.SwinModel, **{**WHOLE_MAP, "window_size": 7}), ("smaller than the window",))]
    for model, needles in cases:
        with pytest.raises(TformerError) as e:
            from_hf_swin(model)
        assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)
