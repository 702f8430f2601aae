"""The outside oracle for the Vision Transformer: Hugging Face's ViTModel and ViTForImageClassification with the
same weights."""

from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import ViTConfig, ViTForImageClassification, ViTModel  # noqa: E402

from tformer.errors import TformerError  # noqa: E402
from tformer.interop.vit import from_hf_vit  # noqa: E402
from tformer.models.vit.model import VisionClassifier, VisionTransformer  # noqa: E402


def _config(**kw) -> ViTConfig:
    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, image_size=8,
                patch_size=2, num_channels=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                qkv_bias=True, num_labels=7, attn_implementation="eager")
    return ViTConfig(**{**base, **kw})


def _randomise(model):
    """Random values everywhere, so that a wrongly mapped LayerNorm, bias or position shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def _pixels(cfg: ViTConfig, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, cfg.num_channels, cfg.image_size, cfg.image_size)


@pytest.mark.parametrize(
    "kw",
    [
        {"image_size": 8, "patch_size": 2, "num_channels": 1},
        {"image_size": 16, "patch_size": 4, "num_channels": 3},
        {"image_size": 8, "patch_size": 4, "num_channels": 3, "qkv_bias": False},
        {"image_size": 16, "patch_size": 2, "num_channels": 1, "hidden_act": "gelu_new", "layer_norm_eps": 1e-6},
    ],
)
def test_same_weights_same_last_hidden_state(kw):
    hf = _randomise(ViTModel(_config(**kw), add_pooling_layer=False))
    ours = from_hf_vit(hf).eval()
    assert isinstance(ours, VisionTransformer)
    x = _pixels(hf.config)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        out = ours(x)
    p = (hf.config.image_size // hf.config.patch_size) ** 2
    assert out.shape == ref.shape == (3, 1 + p, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_pooler_is_left_out_and_the_hidden_states_still_agree():
    hf = _randomise(ViTModel(_config(), add_pooling_layer=True))
    ours = from_hf_vit(hf).eval()
    x = _pixels(hf.config)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).last_hidden_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [{"image_size": 8, "patch_size": 2, "num_channels": 1},
                                {"image_size": 16, "patch_size": 4, "num_channels": 3}])
def test_same_weights_same_logits(kw):
    hf = _randomise(ViTForImageClassification(_config(**kw)))
    ours = from_hf_vit(hf).eval()
    assert isinstance(ours, VisionClassifier) and ours.cfg.num_classes == 7
    x = _pixels(hf.config)
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        out = ours(x)
    assert out.shape == (3, 7)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.argmax(-1), ours.predict(x))


def test_same_attention_weights_as_hugging_face():
    hf = _randomise(ViTModel(_config(), add_pooling_layer=False))
    ours = from_hf_vit(hf).eval()
    x = _pixels(hf.config)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_attentions=True).attentions
        states, weights = ours(x, need_weights=True)
    assert len(weights) == len(ref) == 2
    for w, r in zip(weights, ref, strict=True):
        assert w.shape == r.shape == (3, 4, 17, 17)
        torch.testing.assert_close(w, r, atol=1e-5, rtol=1e-5)


def test_training_mode_and_dropout_are_carried_over():
    hf = ViTModel(_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.05), add_pooling_layer=False)
    ours = from_hf_vit(hf.train())
    assert ours.training and ours.cfg.dropout == 0.1 and ours.cfg.attention_dropout == 0.05
    assert not from_hf_vit(hf.eval()).training


def _fake(hf, state: dict):
    """An object that looks like ``hf`` but holds the state dict ``state``."""
    return SimpleNamespace(config=hf.config, state_dict=lambda: state, training=False)


def _one_line_error(model, *needles: str) -> str:
    with pytest.raises(TformerError) as e:
        from_hf_vit(model)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_a_mis_shaped_tensor_is_one_line_naming_it():
    hf = ViTModel(_config(), add_pooling_layer=False)
    state = dict(hf.state_dict())
    state["layers.1.mlp.fc1.weight"] = state["layers.1.mlp.fc1.weight"][:40]
    state["layers.1.mlp.fc2.weight"] = state["layers.1.mlp.fc2.weight"][:, :40]  # later: the first one is named
    _one_line_error(_fake(hf, state), "layers.1.mlp.fc1.weight", "(40, 32)", "(48, 32)")


def test_a_missing_tensor_is_one_line_naming_it():
    hf = ViTModel(_config(), add_pooling_layer=False)
    state = dict(hf.state_dict())
    del state["layers.0.layernorm_after.bias"]
    _one_line_error(_fake(hf, state), "layers.0.layernorm_after.bias")


def test_an_unknown_tensor_is_one_line_naming_it():
    hf = ViTModel(_config(), add_pooling_layer=False)
    state = {**hf.state_dict(), "embeddings.distillation_token": torch.zeros(1, 1, 32)}
    _one_line_error(_fake(hf, state), "embeddings.distillation_token")


def test_a_position_table_for_another_image_size_is_one_line():
    hf = ViTModel(_config(), add_pooling_layer=False)
    state = {**hf.state_dict(), "embeddings.position_embeddings": torch.zeros(1, 5, 32)}
    _one_line_error(_fake(hf, state), "embeddings.position_embeddings", "(1, 5, 32)")


def test_older_parameter_names_are_read():
    """transformers 4.x called them encoder.layer.{i}.attention.attention.query, intermediate.dense, ..."""
    hf = _randomise(ViTModel(_config(), add_pooling_layer=False))
    renames = {"layers.": "encoder.layer.", "attention.q_proj": "attention.attention.query",
               "attention.k_proj": "attention.attention.key", "attention.v_proj": "attention.attention.value",
               "attention.o_proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    state = {}
    for name, t in hf.state_dict().items():
        for new, old in renames.items():
            name = name.replace(new, old)
        state[name] = t
    ours = from_hf_vit(_fake(hf, state)).eval()
    x = _pixels(hf.config)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_not_a_vit_and_unsupported_settings_are_one_line():
    _one_line_error(torch.nn.Linear(2, 2), "ViTModel", "Linear")
    _one_line_error(ViTModel(_config(hidden_act="quick_gelu"), add_pooling_layer=False), "quick_gelu")
    _one_line_error(ViTModel(_config(image_size=(8, 16)), add_pooling_layer=False), "square")
    _one_line_error(ViTForImageClassification(_config(num_labels=0)), "num_labels=0")
