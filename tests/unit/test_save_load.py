import json

import pytest
import torch

from tformer import ConfigError, Transformer, TransformerConfig


def test_round_trip_gives_identical_logits_and_keeps_tying(tmp_path):
    model = Transformer(TransformerConfig.tiny(output_bias=True)).eval()
    with torch.no_grad():
        model.output_projection.bias.normal_()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = Transformer.from_pretrained(tmp_path).eval()
    assert loaded.cfg == model.cfg
    src, tgt = torch.randint(4, 64, (2, 5)), torch.randint(4, 64, (2, 4))
    assert torch.equal(loaded(src, tgt), model(src, tgt))
    assert loaded.output_projection.weight is loaded.encoder.embed.tokens.weight


def test_untied_round_trip(tmp_path):
    model = Transformer(TransformerConfig.tiny(tgt_vocab_size=40, share_embeddings=False, tie_output=False)).eval()
    model.save_pretrained(tmp_path)
    loaded = Transformer.from_pretrained(tmp_path).eval()
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_corrupt_weights_are_rejected_with_the_file_name(tmp_path):
    Transformer(TransformerConfig.tiny()).save_pretrained(tmp_path)
    w = tmp_path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    with pytest.raises(ConfigError, match="model.safetensors"):
        Transformer.from_pretrained(tmp_path)


def test_mismatched_config_is_rejected(tmp_path):
    Transformer(TransformerConfig.tiny()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["d_ff"] = 128
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="model.safetensors"):
        Transformer.from_pretrained(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Transformer.from_pretrained(tmp_path / "nope")


def test_unknown_key_in_config_json_is_rejected(tmp_path):
    Transformer(TransformerConfig.tiny()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["d_modle"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="d_modle"):
        Transformer.from_pretrained(tmp_path)


def test_the_same_weights_give_the_same_file_bytes(tmp_path):
    """Reproducible artifacts: a run repeated with the same seed yields byte-identical model files."""
    model = Transformer(TransformerConfig.tiny(vocab_size=40))
    files = set()
    for i in range(6):  # safetensors writes several metadata keys in random order: 6 saves would show it
        model.save_pretrained(tmp_path / str(i))
        files.add((tmp_path / str(i) / "model.safetensors").read_bytes())
    assert len(files) == 1


# ---- every family: one folder format, one registry -------------------------------------------------
def _families():
    from tformer.models.bert import EncoderOnly, EncoderOnlyConfig, EncoderOnlyForClassification, EncoderOnlyForMaskedLM
    from tformer.models.cmlm import CMLM, CMLMConfig
    from tformer.models.conformer import ConformerClassifier, ConformerConfig
    from tformer.models.gpt import DecoderOnly, DecoderOnlyConfig
    from tformer.models.vit import VisionClassifier, VisionConfig, VisionTransformer

    bert = EncoderOnlyConfig.tiny(vocab_size=40)
    vit = VisionConfig(image_size=8, patch_size=4, d_model=16, num_heads=2, d_ff=32, num_layers=1, num_classes=3)
    return {
        "Transformer": lambda: Transformer(TransformerConfig.tiny(vocab_size=40)),
        "CMLM": lambda: CMLM(CMLMConfig.tiny(vocab_size=40, max_target_len=12)),
        "EncoderOnly": lambda: EncoderOnly(bert),
        "EncoderOnlyForMaskedLM": lambda: EncoderOnlyForMaskedLM(bert),
        "EncoderOnlyForClassification": lambda: EncoderOnlyForClassification(bert, 3, pooling="mean", dropout=0.2),
        "DecoderOnly": lambda: DecoderOnly(DecoderOnlyConfig.tiny(vocab_size=40)),
        "VisionTransformer": lambda: VisionTransformer(vit),
        "VisionClassifier": lambda: VisionClassifier(vit),
        "ConformerClassifier": lambda: ConformerClassifier(ConformerConfig.tiny(
            n_mels=8, d_model=16, num_heads=2, d_ff=32, num_layers=1, conv_kernel_size=3, num_classes=3)),
    }


@pytest.mark.parametrize("name", list(_families()))
def test_every_family_round_trips_and_its_config_json_names_the_architecture(tmp_path, name):
    from tformer.models.registry import ARCHITECTURES, load_pretrained

    model = _families()[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["architecture"] == name == type(model).__name__ and ARCHITECTURES[name] is type(model)
    for loaded in (type(model).from_pretrained(tmp_path), load_pretrained(tmp_path)):
        assert type(loaded) is type(model) and loaded.cfg == model.cfg
        assert loaded.num_parameters() == model.num_parameters()
        for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(a, b), n


def test_a_folder_loaded_with_another_family_s_class_is_one_clear_line(tmp_path):
    from tformer.models.gpt import DecoderOnly, DecoderOnlyConfig
    from tformer.models.vit import VisionTransformer

    DecoderOnly(DecoderOnlyConfig.tiny()).save_pretrained(tmp_path)
    for cls in (Transformer, VisionTransformer):
        with pytest.raises(ConfigError, match=rf"holds a DecoderOnly, not a {cls.__name__}$") as e:
            cls.from_pretrained(tmp_path)
        assert "\n" not in str(e.value)


def test_the_registry_refuses_an_unknown_architecture_and_a_folder_of_nothing_known(tmp_path):
    from tformer.models.registry import load_pretrained

    Transformer(TransformerConfig.tiny()).save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**doc, "architecture": "GPT"}))
    with pytest.raises(ConfigError, match=r"config.json: architecture must be one of \('Transformer', .*got 'GPT'"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 64}))
    with pytest.raises(ConfigError, match="no architecture key, and the keys are none of a known model's"):
        load_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="model folder not found"):
        load_pretrained(tmp_path / "nope")


def test_a_classifier_folder_needs_its_section_and_checks_it(tmp_path):
    from tformer.models.bert import EncoderOnly, EncoderOnlyForClassification

    _families()["EncoderOnlyForClassification"]().save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["classifier"] == {"num_classes": 3, "pooling": "mean", "dropout": 0.2}
    assert type(EncoderOnly.from_pretrained(tmp_path)) is EncoderOnly  # the encoder of a head model
    (tmp_path / "config.json").write_text(json.dumps({**doc, "classifier": {**doc["classifier"], "pooling": "max"}}))
    with pytest.raises(ConfigError, match=r"config.json: classifier: pooling must be one of"):
        EncoderOnlyForClassification.from_pretrained(tmp_path)
    del doc["classifier"]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"config.json: no classifier section$"):
        EncoderOnlyForClassification.from_pretrained(tmp_path)


def test_saving_writes_no_temporary_files_and_replaces_an_older_folder(tmp_path):
    Transformer(TransformerConfig.tiny(d_ff=48)).save_pretrained(tmp_path)
    model = Transformer(TransformerConfig.tiny())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert Transformer.from_pretrained(tmp_path).cfg == model.cfg


def test_the_translator_s_loader_takes_either_encoder_decoder_and_refuses_other_families_in_one_line(tmp_path):
    from tformer.errors import TformerError
    from tformer.models.cmlm import CMLM
    from tformer.translator import load_model

    for name in ("Transformer", "CMLM", "DecoderOnly"):
        _families()[name]().save_pretrained(tmp_path / name)
    assert type(load_model(tmp_path / "Transformer")) is Transformer
    assert type(load_model(tmp_path / "CMLM")) is CMLM
    with pytest.raises(TformerError, match="holds a model of class DecoderOnly: translating needs an encoder-decoder"):
        load_model(tmp_path / "DecoderOnly")
