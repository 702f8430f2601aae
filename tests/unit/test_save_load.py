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
