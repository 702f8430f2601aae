"""The predictor of an lm run (tasks/lm_run.py), on an untrained tiny model written as a run: each answer is the
model's own generate() on that prompt alone (greedy and beam), whatever the batching; the continuation is the text
the new tokens add (their spacing included); beam answers carry true scores and n-best lists; bad prompts and
settings are one-line errors naming the prompt; the example is the first words of the run's validation text."""

import pytest
import torch

from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig
from tformer.tasks import open_run
from tformer.tasks.lm_run import LanguageModelPredictor

TEXT = ["one two three four five", "six seven eight nine ten", "eleven twelve thirteen", "two three five seven"]
PROMPTS = ["one two", "seven eight nine", "three", "twelve thirteen one two six"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory as tformer train leaves it: config.yaml, tokenizer.json, model/ (a seeded untrained model
    with spread-out predictions, so that prompts go different ways)."""
    d = tmp_path_factory.mktemp("lm-run")
    (d / "valid.txt").write_text("\n  seven  eight nine ten eleven\n")
    (d / "config.yaml").write_text(f"task: lm\ndata: {{train_src: {d / 'valid.txt'}, valid_src: {d / 'valid.txt'}}}\n")
    tok = Tokenizer.train(TEXT * 5, vocab_size=60)
    tok.save(d / "tokenizer.json")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = DecoderOnlyConfig.tiny(vocab_size=tok.vocab_size, dropout=0.0, attention_dropout=0.0, max_len=24,
                                     pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
        model = DecoderOnly(cfg)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.normal_(0.0, 0.4)
    model.save_pretrained(d / "model")
    return d


def _alone(predictor, prompt, **settings):
    """The new ids the model itself gives ``prompt`` alone (no batch, no padding)."""
    ids = torch.tensor([[predictor.model.cfg.bos_id, *predictor.tokenizer.encode(prompt)]])
    return predictor.model.generate(ids, max_new_tokens=8, **settings)[0].tolist()


@pytest.mark.parametrize("max_tokens", [1, 12, 4096])  # one prompt a batch, a few, all in one
def test_each_answer_is_the_models_own_continuation_of_the_prompt_alone(run, max_tokens):
    p = open_run(run)
    assert isinstance(p, LanguageModelPredictor) and p.endpoint == "generate" and p.decodes
    for settings in ({}, {"beam_size": 3}):
        answers = p.predict(PROMPTS, max_tokens=max_tokens, max_len=8, **settings)
        for prompt, a in zip(PROMPTS, answers, strict=True):
            new = _alone(p, prompt, **settings)
            text, n = p.continuation([p.model.cfg.bos_id, *p.tokenizer.encode(prompt)], new)
            assert a["prompt"] == prompt and a["continuation"] == text and a["tokens"] == n
            assert ("score" in a) == bool(settings)
    assert len({a["continuation"] for a in p.predict(PROMPTS, max_len=8)}) > 1  # not vacuous


def test_the_continuation_is_the_text_the_new_tokens_add(run):
    p = open_run(run)
    tok, bos, eos = p.tokenizer, p.model.cfg.bos_id, p.model.cfg.eos_id
    prompt = [bos, *tok.encode("one two")]
    new = tok.encode("three four")
    assert p.continuation(prompt, [*new, eos, 7, 7]) == (" three four", len(new))  # a new word: its space; EOS ends
    piece = tok.encode("thirteen")
    assert len(piece) > 1  # a word of several pieces: continuing inside it adds no space
    assert p.continuation([bos, piece[0]], piece[1:]) == (tok.decode(piece)[len(tok.decode(piece[:1])):],
                                                          len(piece) - 1)
    assert p.continuation(prompt, [eos]) == ("", 0)


def test_beam_answers_carry_true_scores_and_nbest_lists(run):
    p = open_run(run)
    (a,) = p.predict(["seven eight"], beam_size=4, nbest=3, max_len=6)
    ids = torch.tensor([[p.model.cfg.bos_id, *p.tokenizer.encode("seven eight")]])
    hyps = p.model.generate_nbest(ids, beam_size=4, nbest=3, max_new_tokens=6)[0]
    assert [h["score"] for h in a["nbest"]] == [h.score for h in hyps] and a["score"] == hyps[0].score
    assert [(h["continuation"], h["tokens"]) for h in a["nbest"]] == [p.continuation(ids[0].tolist(), h.tokens)
                                                                      for h in hyps]
    assert "nbest" not in p.predict(["seven eight"], beam_size=4, max_len=6)[0]


@pytest.mark.parametrize("inputs, settings, message", [
    (["one", " "], {}, "^input 2: empty prompt$"),
    (["one", 5], {}, "^input 2: expected a text prompt, got int$"),
    (["one " * 30], {}, "^input 1: the prompt has 30 tokens; the model reads at most 23$"),
    ("one two", {}, "takes a list of prompts"),
    (["one"], {"beams": 2}, "unexpected generation setting 'beams'"),
    (["one"], {"monotonic_window": 2}, "needs a monotonic attention window"),
    (["one"], {"max_tokens": 0}, "max_tokens must be >= 1"),
    (["one"], {"temperature": 0.5}, "temperature only applies when sampling"),
])
def test_bad_prompts_and_settings_are_one_line_errors(run, inputs, settings, message):
    with pytest.raises(TformerError, match=message) as e:
        open_run(run).predict(inputs, **settings)
    assert "\n" not in str(e.value)


def test_the_example_is_the_first_words_of_the_validation_text_or_none(run, tmp_path):
    assert open_run(run).example() == "seven eight nine"
    (run / "valid.txt").rename(tmp_path / "gone.txt")
    try:
        assert open_run(run).example() is None  # the run moved away from its data
    finally:
        (tmp_path / "gone.txt").rename(run / "valid.txt")
    with pytest.raises(TformerError, match="holds a Transformer; a lm run has a DecoderOnly$"):
        _run_of_another_model(tmp_path)


def _run_of_another_model(tmp_path):
    from tformer import Transformer, TransformerConfig

    (tmp_path / "config.yaml").write_text("task: lm\ndata: {train_src: x.txt}\n")
    Transformer(TransformerConfig.tiny(vocab_size=20)).save_pretrained(tmp_path / "model")
    return open_run(tmp_path)
