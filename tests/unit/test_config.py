import dataclasses

import pytest

from tformer import ConfigError, TransformerConfig


def test_configs_are_frozen():
    cfg = TransformerConfig.tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 8


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"d_model": 30, "num_heads": 4}, "divisible"),
        ({"dropout": 1.5}, "dropout"),
        ({"activation": "tanh"}, "activation"),
        ({"norm": "sandwich"}, "norm"),
        ({"tgt_vocab_size": 10}, "share_embeddings"),
        ({"pad_id": 99}, "pad_id"),
        ({"eos_id": 0}, "eos_id"),
    ],
)
def test_invalid_values_are_clear_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig.tiny(**kw)


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    d = TransformerConfig.tiny().to_dict()
    with pytest.raises(ConfigError, match="num_layer"):
        TransformerConfig.from_dict({**d, "num_layer": 3})
    with pytest.raises(ConfigError, match="d_model must be an integer"):
        TransformerConfig.from_dict({**d, "d_model": "big"})
    assert TransformerConfig.from_dict(d) == TransformerConfig.tiny()


def test_replace_validates_again():
    cfg = TransformerConfig.tiny()
    assert cfg.replace(dropout=0.2).dropout == 0.2
    with pytest.raises(ConfigError):
        cfg.replace(num_heads=5)


def test_json_round_trip(tmp_path):
    cfg = TransformerConfig.small(tgt_vocab_size=900, share_embeddings=False)
    cfg.save_json(tmp_path / "c.json")
    assert TransformerConfig.load_json(tmp_path / "c.json") == cfg
