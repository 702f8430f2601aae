import pytest

from tformer.config import ConfigError
from tformer.tasks import load_run_config
from tformer.training.config import RunConfig

RECIPE = """
run_dir: runs/x
data:
  train_src: a.en
  train_tgt: a.de
  vocab_size: 100
model:
  preset: tiny
  d_model: 64
train:
  max_steps: 10
"""


def _write(tmp_path, text=RECIPE):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_dotted_overrides(tmp_path):
    cfg = load_run_config(_write(tmp_path), ["train.max_steps=5", "model.num_heads=8", "data.shared_vocab=false"])
    assert cfg.train.max_steps == 5 and cfg.data.shared_vocab is False
    m = cfg.model_config(vocab_size=100)
    assert (m.d_model, m.num_heads, m.num_encoder_layers) == (64, 8, 2)


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.max_stepz=3", "max_stepz"),
        ("train.max_steps=lots", "max_steps must be an integer"),
        ("model.d_modle=3", "d_modle"),
        ("model.preset=huge", "preset"),
        ("model.vocab_size=3", "tokenizer"),
        ("train.precision=fp8", "precision"),
        ("nonsense", "key=value"),
    ],
)
def test_bad_keys_and_values_are_one_line_errors(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_run_config(_write(tmp_path), [override])
    assert "\n" not in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="YAML"):
        load_run_config(_write(tmp_path, "a: [1, 2"))


def test_defaults_validate():
    assert RunConfig().model_config(vocab_size=50).vocab_size == 50


def test_data_max_len_must_fit_the_model(tmp_path):
    with pytest.raises(ConfigError, match="model.max_len"):
        load_run_config(_write(tmp_path), ["data.max_len=200", "model.max_len=128"])


def test_shared_embeddings_need_a_shared_vocabulary(tmp_path):
    with pytest.raises(ConfigError, match="shared_vocab"):
        load_run_config(_write(tmp_path), ["data.shared_vocab=false", "model.share_embeddings=true"])
    cfg = load_run_config(_write(tmp_path), ["data.shared_vocab=false"])
    m = cfg.model_config(vocab_size=100, tgt_vocab_size=100)  # equal sizes, still two matrices
    assert not m.share_embeddings and m.tie_output


def test_yaml_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # PyYAML reads 1e-9 as a string; the paper's Adam epsilon must still load.
    assert load_run_config(_write(tmp_path), ["train.adam_eps=1e-9"]).train.adam_eps == 1e-9


@pytest.mark.parametrize("override", ["train.max_steps=[1", "train.bleu_tokenize=bogus", "1=2"])
def test_more_bad_overrides(tmp_path, override):
    with pytest.raises(ConfigError):
        load_run_config(_write(tmp_path), [override])


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_run_config(tmp_path)
