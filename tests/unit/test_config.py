import dataclasses
import json

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


# ---- the base class and the shared validators ------------------------------------------------------
def _family_configs():
    from tformer.config import AttentionConfig
    from tformer.models.bert import ClassifierConfig, EncoderOnlyConfig
    from tformer.models.cmlm import CMLMConfig
    from tformer.models.gpt import DecoderOnlyConfig
    from tformer.models.vit import VisionConfig

    return [TransformerConfig.tiny(), CMLMConfig.tiny(), EncoderOnlyConfig.tiny(), ClassifierConfig(3),
            DecoderOnlyConfig.tiny(), VisionConfig.digits(), AttentionConfig(kind="chunked")]


@pytest.mark.parametrize("cfg", _family_configs(), ids=lambda c: type(c).__name__)
def test_every_config_is_one_base_class_with_the_same_dict_and_json_forms(tmp_path, cfg):
    from tformer.config import Config

    assert isinstance(cfg, Config) and dataclasses.is_dataclass(cfg)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    cfg.save_json(tmp_path / "c.json")
    assert type(cfg).load_json(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) for {type(cfg).__name__}: colour"):
        type(cfg).from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dropout = 0.5


def test_load_json_has_one_wording_for_every_bad_file(tmp_path):
    from tformer.models.vit import VisionConfig

    for cls, required in ((TransformerConfig, {"vocab_size": 64}), (VisionConfig, {})):
        with pytest.raises(ConfigError, match="config file not found: .*nope.json$"):
            cls.load_json(tmp_path / "nope.json")
        (tmp_path / "bad.json").write_text("{")
        with pytest.raises(ConfigError, match="bad.json is not valid JSON: "):
            cls.load_json(tmp_path / "bad.json")
        (tmp_path / "list.json").write_text("[1]")
        with pytest.raises(ConfigError, match="list.json: expected a JSON object, got list$"):
            cls.load_json(tmp_path / "list.json")
        (tmp_path / "zero.json").write_text(json.dumps({"d_model": 0, **required}))
        with pytest.raises(ConfigError, match="zero.json: d_model and num_heads must be positive$"):
            cls.load_json(tmp_path / "zero.json")


@pytest.mark.parametrize("cfg", [c for c in _family_configs() if hasattr(c, "num_heads")],
                         ids=lambda c: type(c).__name__)
def test_the_shared_checks_say_the_same_thing_in_every_family(cfg):
    fields = {f.name for f in dataclasses.fields(cfg)}
    cases = [("num_heads", 5, r"d_model \(\d+\) must be divisible by num_heads \(5\)"),
             ("dropout", 1.0, r"^dropout must be in \[0, 1\), got 1.0$"),
             ("activation", "tanh", r"^activation must be one of \('relu', 'gelu', 'gelu_tanh', 'silu'\), "
                                    r"got 'tanh'$"),
             ("norm", "sandwich", r"^norm must be one of \('post', 'pre'\), got 'sandwich'$")]
    checked = [name for name, _, _ in cases if name in fields]
    assert {"num_heads", "dropout", "activation"} <= set(checked)
    for name, value, match in cases:
        if name in fields:
            with pytest.raises(ConfigError, match=match):
                cfg.replace(**{name: value})
