"""Folders written by tformer 0.1.0 before the architecture redesign keep loading and give the same outputs.

The fixtures under tests/fixtures/legacy were saved by the code at commit 8cfdeb9 (tests/fixtures/legacy/make.py):
a tiny model of every family (config.json + model.safetensors), the inputs it was given and its outputs, and a
whole run directory (tokenizer, config.yaml, model/, checkpoints/last.pt) with its beam-2 translations.
Today's code loads each one and must reproduce the outputs: the logits within float32 rounding of the same sums
(computed here in float64, so no CPU's rounding decides), the decoded ids exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tformer.models.bert import EncoderOnly, EncoderOnlyForClassification, EncoderOnlyForMaskedLM
from tformer.models.cmlm.config import CMLMConfig
from tformer.models.cmlm.model import CMLM
from tformer.models.gpt.model import DecoderOnly
from tformer.models.registry import load_pretrained, resolve
from tformer.models.transformer.model import Transformer
from tformer.models.vit.model import VisionClassifier, VisionTransformer
from tformer.training.average import average_checkpoints
from tformer.translator import Translator, load_model

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
ATOL = 1e-5  # the expected values are float32 sums; float32 rounding of these tiny models is below 1e-6


def _expected(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(LEGACY / f"{name}.expected.safetensors"))


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.double(), want.double(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name,cls", [
    ("transformer", Transformer), ("t5", Transformer), ("pointer_generator", Transformer),  # nothing: their keys
    ("translation_run/model", Transformer), ("cmlm", CMLM),  # the length predictor's keys
    ("bert", EncoderOnly), ("bert_mlm", EncoderOnlyForMaskedLM),  # an "architecture" key, the config nested
    ("bert_classifier", EncoderOnlyForClassification), ("gpt", DecoderOnly),  # nothing: their keys
    ("vit", VisionTransformer), ("vit_classifier", VisionClassifier),  # nothing: their keys and the head's tensors
])
def test_the_registry_resolves_every_old_folder_to_its_class(name, cls):
    assert resolve(LEGACY / name) is cls
    assert type(load_pretrained(LEGACY / name)) is cls


@pytest.mark.parametrize("name", ["transformer", "t5", "pointer_generator"])
def test_an_encoder_decoder_folder_gives_the_same_logits_and_translations(name):
    model = load_model(LEGACY / name)
    assert type(model) is Transformer
    want = _expected(name)
    model = model.double().eval()
    with torch.no_grad():
        _close(model(want["src"], want["tgt_in"]), want["logits"])
        assert torch.equal(model.generate(want["src"], max_len=6), want["greedy"])
        assert torch.equal(model.generate(want["src"], beam_size=2, max_len=6), want["beam"])


def test_a_cmlm_folder_gives_the_same_logits_and_mask_predict_output():
    model = load_model(LEGACY / "cmlm")
    assert type(model) is CMLM and isinstance(model.cfg, CMLMConfig)
    want = _expected("cmlm")
    model = model.double().eval()
    with torch.no_grad():
        logits, length_logits = model(want["src"], want["tgt_in"])
        _close(logits, want["logits"])
        _close(length_logits, want["length_logits"])
        assert torch.equal(model.generate(want["src"], iterations=2, length_candidates=2), want["generate"])


@pytest.mark.parametrize("name,cls", [("bert", EncoderOnly), ("bert_mlm", EncoderOnlyForMaskedLM),
                                      ("bert_classifier", EncoderOnlyForClassification)])
def test_an_encoder_only_folder_gives_the_same_outputs(name, cls):
    model = cls.from_pretrained(LEGACY / name).double().eval()
    want = _expected(name)
    with torch.no_grad():
        _close(model(want["input_ids"], attention_mask=want["attention_mask"]), want["out"])


def test_a_decoder_only_folder_gives_the_same_logits_and_generation():
    model = DecoderOnly.from_pretrained(LEGACY / "gpt").double().eval()
    want = _expected("gpt")
    with torch.no_grad():
        _close(model(want["input_ids"]), want["logits"])
        assert torch.equal(model.generate(want["input_ids"], max_new_tokens=4), want["generate"])


@pytest.mark.parametrize("name,cls", [("vit", VisionTransformer), ("vit_classifier", VisionClassifier)])
def test_a_vision_folder_gives_the_same_outputs(name, cls):
    model = cls.from_pretrained(LEGACY / name).double().eval()
    want = _expected(name)
    with torch.no_grad():
        _close(model(want["pixel_values"].double()), want["out"])


def test_a_run_directory_translates_as_before_and_its_checkpoint_still_loads(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "translation_run", run)
    lines = ["one", "two three", "three four five", "four", "five one"]
    want = (LEGACY / "translation_run.expected.txt").read_text().splitlines()
    assert Translator.from_pretrained(run).translate(lines, beam_size=2) == want
    averaged = average_checkpoints([run / "checkpoints" / "last.pt"])  # the run's last update, from the .pt file
    saved = load_model(run / "model")
    for (name, a), (_, b) in zip(averaged.state_dict().items(), saved.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # model/ is the best checkpoint, which is the last one here
