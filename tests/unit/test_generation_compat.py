"""Settings given by position, as tformer 0.1.0's signatures took them, mean what they meant; the public decoding
engines check a direct caller's settings in one line (as they did before GenerationOptions existed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tformer.errors import TformerError
from tformer.generation import beam_search_nbest, greedy_search, sample
from tformer.generation.mask_predict import mask_predict
from tformer.models.registry import load_pretrained
from tformer.translator import Translator

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
SRC = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 11, 2, 0]])


def test_an_encoder_decoder_takes_the_old_positional_settings():
    model = load_pretrained(LEGACY / "transformer").eval()
    assert torch.equal(model.generate(SRC, 2, 6), model.generate(SRC, beam_size=2, max_len=6))
    assert torch.equal(model.generate(SRC, 2, 6, 3, 1.0), model.generate(SRC, beam_size=2, max_len=6, min_len=3,
                                                                          length_penalty=1.0))
    by_position = model.generate_nbest(SRC, 2, 1, 6)
    by_name = model.generate_nbest(SRC, beam_size=2, nbest=1, max_len=6)
    assert [[h.tokens for h in row] for row in by_position] == [[h.tokens for h in row] for row in by_name]
    with pytest.raises(TypeError, match="multiple values for setting 'beam_size'"):
        model.generate(SRC, 2, beam_size=3)
    with pytest.raises(TypeError, match="at most 4 settings by position"):
        model.generate(SRC, 2, 6, 0, 0.6, 9)


def test_a_cmlm_a_language_model_and_a_translator_take_theirs():
    cmlm = load_pretrained(LEGACY / "cmlm").eval()
    assert torch.equal(cmlm.generate(SRC, 2, 2), cmlm.generate(SRC, iterations=2, length_candidates=2))
    gpt = load_pretrained(LEGACY / "gpt").eval()
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.equal(gpt.generate(prompt, 4), gpt.generate(prompt, max_new_tokens=4))


def test_a_translator_takes_the_old_positional_settings(tmp_path):
    shutil.copytree(LEGACY / "translation_run", tmp_path / "run")
    translator = Translator.from_pretrained(tmp_path / "run")
    lines = ["one", "two three", "three four five"]
    assert translator.translate(lines, 2) == translator.translate(lines, beam_size=2)
    assert translator.translate(lines, 2, 8, 0, 0.6, 64) == translator.translate(lines, beam_size=2, max_len=8,
                                                                                max_tokens=64)
    nbest = translator.translate_nbest(lines, 2, 2)
    assert nbest == translator.translate_nbest(lines, beam_size=2, nbest=2)


def test_the_engines_refuse_bad_settings_of_a_direct_caller_in_one_line():
    model = load_pretrained(LEGACY / "transformer").eval()
    cmlm = load_pretrained(LEGACY / "cmlm").eval()
    with pytest.raises(TformerError, match="max_len must be >= 1"):
        greedy_search(model, SRC, max_len=0)
    with pytest.raises(TformerError, match="nbest must be"):
        beam_search_nbest(model, SRC, beam_size=2, max_len=5, nbest=0)
    with pytest.raises(TformerError, match="temperature must be > 0"):
        sample(model, SRC, max_len=5, temperature=0.0)
    with pytest.raises(TformerError, match="iterations must be >= 1"):
        mask_predict(cmlm, SRC, iterations=0)


@pytest.mark.parametrize("argv,message", [(["--beam", "0"], "--beam must be >= 1, got 0"),
                                          (["--length-beam", "0"], "--length-beam must be >= 1, got 0"),
                                          (["--beam", "2", "--nbest", "5"], r"--nbest must be in \[1, --beam=2\]")])
def test_the_cli_names_the_flags_in_a_bad_setting(argv, message):
    import argparse

    from tformer.cli import translate

    parser = argparse.ArgumentParser()
    translate.add_arguments(parser)
    with pytest.raises(TformerError, match=f"^{message}"):
        translate.decoding_options(parser.parse_args(["run", *argv]))
