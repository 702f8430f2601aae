"""The Vision Transformer, its configuration, and the digits data it trains on (Hugging Face parity is in
test_interop_vit.py)."""

import sys

import pytest
import torch
import torch.nn.functional as F

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.models.vit.model import (
    PatchEmbedding,
    VisionClassifier,
    VisionConfig,
    VisionTransformer,
    attention_rollout,
    cls_attention_maps,
)


def _cfg(**kw) -> VisionConfig:
    base = dict(image_size=8, patch_size=2, num_channels=1, d_model=32, num_heads=4, d_ff=48, num_layers=2,
                dropout=0.1, num_classes=10)
    return VisionConfig(**{**base, **kw})


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"image_size": 8, "patch_size": 3}, "image_size (8) must be divisible by patch_size (3)"),
        ({"d_model": 30}, "d_model (30) must be divisible by num_heads (4)"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"num_classes": -1}, "num_classes must be >= 0"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"num_layers": 0}, "num_layers must be >= 1"),
    ],
)
def test_bad_config_values_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        _cfg(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_config_round_trips_and_rejects_unknown_keys(tmp_path):
    cfg = _cfg(init_std=0.02)
    assert VisionConfig.from_dict(cfg.to_dict()) == cfg
    cfg.save_json(tmp_path / "c.json")
    assert VisionConfig.load_json(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        VisionConfig.from_dict({**cfg.to_dict(), "hidden_size": 4})
    with pytest.raises(ConfigError, match="divisible"):
        cfg.replace(patch_size=5)
    assert (cfg.grid_size, cfg.num_patches, cfg.d_head) == (4, 16, 8)
    assert VisionConfig.digits().num_patches == 16


# ---- the model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("image_size, patch_size, channels", [(8, 2, 1), (16, 4, 3), (8, 8, 1)])
def test_shapes_and_attention_rows_sum_to_one(image_size, patch_size, channels):
    cfg = _cfg(image_size=image_size, patch_size=patch_size, num_channels=channels)
    model = VisionTransformer(cfg).eval()
    x = torch.rand(3, channels, image_size, image_size)
    states, weights = model(x, need_weights=True)
    n = 1 + (image_size // patch_size) ** 2
    assert states.shape == (3, n, 32)
    assert len(weights) == cfg.num_layers
    for w in weights:
        assert w.shape == (3, 4, n, n)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 4, n))
    # the reference path (weights asked for) and the fused path compute the same states
    torch.testing.assert_close(model(x), states, atol=1e-5, rtol=1e-5)
    maps = cls_attention_maps(weights, cfg.grid_size)
    assert maps.shape == (cfg.num_layers, 3, 4, cfg.grid_size, cfg.grid_size)
    torch.testing.assert_close(maps[-1].sum((-1, -2)), 1 - weights[-1][:, :, 0, 0])
    assert cls_attention_maps(weights[0], cfg.grid_size).shape == (3, 4, cfg.grid_size, cfg.grid_size)


def test_attention_rollout_follows_the_residual_stream():
    model = VisionTransformer(_cfg(num_layers=3)).eval()
    _, weights = model(torch.rand(2, 1, 8, 8), need_weights=True)
    eye = torch.eye(17)
    steps = [0.5 * w.mean(1) + 0.5 * eye for w in weights]  # rows already sum to 1
    torch.testing.assert_close(attention_rollout(weights), steps[2] @ steps[1] @ steps[0])
    torch.testing.assert_close(attention_rollout(weights).sum(-1), torch.ones(2, 17))
    torch.testing.assert_close(attention_rollout(weights[:1]), steps[0])


def test_patch_embedding_is_one_linear_map_per_patch():
    """ViT Eq. 1: x_p^i E, the flattened patch times one matrix, patches in row-major order."""
    embed = PatchEmbedding(image_size=8, patch_size=4, num_channels=3, d_model=5)
    x = torch.randn(2, 3, 8, 8)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, G, G, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 3 * 16)  # (B, P, C * 4 * 4)
    e = embed.projection.weight.reshape(5, 3 * 16)  # (D, C * 4 * 4)
    torch.testing.assert_close(embed(x), patches @ e.T + embed.projection.bias, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected pixel_values of shape \(B, 3, 8, 8\)"):
        embed(torch.zeros(2, 1, 8, 8))


def test_an_image_does_not_depend_on_its_batch_mates():
    model = VisionClassifier(_cfg()).eval()
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), atol=1e-5, rtol=1e-5)


def test_classifier_reads_the_class_token():
    model = VisionClassifier(_cfg()).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    x = torch.rand(2, 1, 8, 8)
    logits, weights = model(x, need_weights=True)
    assert logits.shape == (2, 10) and len(weights) == 2
    torch.testing.assert_close(logits, model.head(model.vit(x)[:, 0]))
    assert model.training is False and model.predict(x).shape == (2,)
    with pytest.raises(ConfigError, match="num_classes >= 1"):
        VisionClassifier(_cfg(num_classes=0))


def test_dropout_only_in_training():
    model = VisionTransformer(_cfg(dropout=0.5))
    x = torch.rand(2, 1, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("cls", [VisionTransformer, VisionClassifier])
def test_save_and_load_round_trip(tmp_path, cls):
    model = cls(_cfg(init_std=0.05)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = cls.from_pretrained(tmp_path / "m").eval()
    assert loaded.cfg == model.cfg
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))


def test_loading_mismatched_or_missing_files_is_one_line(tmp_path):
    VisionClassifier(_cfg()).save_pretrained(tmp_path / "c")
    with pytest.raises(ConfigError) as e:
        VisionTransformer.from_pretrained(tmp_path / "c")  # a classifier's weights are not a backbone's
    assert "holds a VisionClassifier, not a VisionTransformer" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "c" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot load"):
        VisionClassifier.from_pretrained(tmp_path / "c")
    with pytest.raises(ConfigError, match="config file not found"):
        VisionClassifier.from_pretrained(tmp_path / "nowhere")


def test_a_few_steps_on_digits_lower_the_loss():
    from tformer.data.images import load_digits_splits, random_shift

    data = load_digits_splits(seed=0)
    model = VisionClassifier(_cfg(dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x, y = data.train.images[:64], data.train.labels[:64]
    model.eval()
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        loss = F.cross_entropy(model(random_shift(x, 1, g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    assert after < before - 0.3, (before, after)


# ---- the digits ------------------------------------------------------------------------------------
def test_digits_splits_are_disjoint_stratified_and_seeded():
    from sklearn.datasets import load_digits

    from tformer.data.images import load_digits_splits

    data = load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2)
    splits = (data.train, data.valid, data.test)
    assert [len(s) for s in splits] == [1257, 180, 360] and data.num_classes == 10
    for s in splits:
        assert s.images.shape == (len(s), 1, 8, 8) and s.images.dtype == torch.float32
        assert s.labels.dtype == torch.int64
        assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    # disjoint and complete: every original image is in exactly one split (compared as pixel rows with labels)
    x, y = load_digits(return_X_y=True)
    original = sorted(tuple(r) + (int(c),) for r, c in zip((torch.as_tensor(x) / 16).tolist(), y.tolist(), strict=True))
    ours = sorted(tuple(r) + (int(c),) for s in splits
                  for r, c in zip(s.images.double().flatten(1).tolist(), s.labels.tolist(), strict=True))
    assert ours == original
    # stratified: each split's class counts are within one of its share of each class's count
    total = torch.bincount(torch.as_tensor(y), minlength=10).double()
    for s, share in zip(splits, (0.7, 0.1, 0.2), strict=True):
        counts = torch.bincount(s.labels, minlength=10).double()
        assert (counts - share * total).abs().max() <= 1.5, (counts, share * total)
    # seeded
    again = load_digits_splits(seed=0, valid_fraction=0.1, test_fraction=0.2)
    assert torch.equal(again.test.labels, data.test.labels) and torch.equal(again.train.images, data.train.images)
    other = load_digits_splits(seed=1, valid_fraction=0.1, test_fraction=0.2)
    assert not torch.equal(other.test.images, data.test.images)


def test_digits_without_scikit_learn_is_one_line(monkeypatch):
    from tformer.data.images import load_digits_splits

    monkeypatch.setitem(sys.modules, "sklearn", None)  # "import sklearn" now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(TformerError, match=r"pip install scikit-learn"):
        load_digits_splits()
    with pytest.raises(TformerError, match="sum below 1"):
        load_digits_splits(valid_fraction=0.5, test_fraction=0.5)


def test_random_shift_moves_each_image_by_at_most_one_pixel():
    from tformer.data.images import random_shift

    x = torch.zeros(50, 2, 8, 8)
    x[:, :, 3, 4] = 1.0  # one bright pixel, away from the border
    x[:, 1] *= 2
    out = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum((-1, -2)), x.sum((-1, -2)))  # nothing lost, channels moved together
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = where // 8, where % 8
    assert rows.sub(3).abs().max() <= 1 and cols.sub(4).abs().max() <= 1
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 9  # all nine offsets drawn
    assert torch.equal(out[:, 1], 2 * out[:, 0])
    assert random_shift(x, 0) is x


def test_mixup_blends_images_and_targets_alike():
    from tformer.data.images import mixup

    x = torch.eye(64)[:16].view(16, 1, 8, 8)  # image i is one bright pixel at i: a mix shows both partners
    y = torch.arange(16) % 10
    for _ in range(5):
        mixed, targets = mixup(x, y, num_classes=10, alpha=0.4)
        assert mixed.shape == x.shape and targets.shape == (16, 10)
        torch.testing.assert_close(targets.sum(-1), torch.ones(16))
        flat = mixed.flatten(1)  # (N, 64)
        lam = flat[torch.arange(16), torch.arange(16)]  # λ (1 where an image is its own partner)
        partner = torch.where(lam < 1, flat[:, :16].clone().fill_diagonal_(0).argmax(1), torch.arange(16))
        expected = lam[:, None] * F.one_hot(y, 10) + (1 - lam[:, None]) * F.one_hot(y[partner], 10)
        torch.testing.assert_close(targets, expected.float())
        assert len(set(lam[lam < 1].tolist())) <= 1  # one λ for the whole batch
    plain, onehot = mixup(x, y, 10, alpha=0.0)
    assert plain is x and torch.equal(onehot.argmax(-1), y)
