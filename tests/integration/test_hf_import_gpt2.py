"""``tformer import`` of a GPT-2 folder, proved by ``transformers`` itself.

A real ``GPT2LMHeadModel`` (briefly trained here) saved with its ``GPT2Tokenizer`` (byte-level BPE trained here, the
one ``<|endoftext|>`` last, as GPT-2's 50256) becomes a language-model run (task lm): its tokenizer gives
``GPT2Tokenizer``'s ids and texts, and ``tformer generate`` and ``tformer serve`` continue prompts as
``generate`` + ``decode`` do, greedy and beam 4 (length penalty 0 on both sides). The run reads a prompt as
``<|endoftext|>`` + its ids, so ``transformers`` is given the same.
"""

import json
import re
from types import SimpleNamespace

import pytest

transformers = pytest.importorskip("transformers")
import torch  # noqa: E402
from cli_helpers import tformer_cli  # noqa: E402
from hf_import_helpers import chains, edited_copy, gpt2_folder, hf_continue  # noqa: E402

from tformer.data.tokenizer import Tokenizer  # noqa: E402
from tformer.errors import TformerError  # noqa: E402
from tformer.interop.folders import import_folder  # noqa: E402

PROMPTS = [*(" ".join(text.split()[:k]) for text, k in zip(chains(6, seed=99), [1, 2, 3, 1, 2, 4], strict=True)),
           "the dog", "Über", "a", "Water!"]  # different lengths: the CLI batches them padded


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return gpt2_folder(tmp_path_factory.mktemp("hf") / "gpt2-tiny")


@pytest.fixture(scope="module")
def imported(gpt2, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "gpt2"
    r = tformer_cli("import", gpt2, "--out", run)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["model_type"] == "gpt2" and record["task"] == "lm"
    return run


def cli_generate(run, prompts, beam: int) -> list[str]:
    alpha = ["--alpha", 0] if beam > 1 else []
    args = [a for p in prompts for a in ("--prompt", p)]
    r = tformer_cli("generate", run, *args, "--beam", beam, *alpha, "--max-new-tokens", 24, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["continuation"] for line in r.stdout.splitlines()]


def test_the_tokenizer_gives_gpt2_tokenizers_ids_and_texts(gpt2, imported):
    ref = transformers.AutoTokenizer.from_pretrained(gpt2)
    tok = Tokenizer.load(imported / "tokenizer.json")
    end = ref.eos_token_id
    assert end == tok.vocab_size - 1 == ref.bos_token_id == ref.unk_token_id
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (end,) * 4
    model = json.loads((imported / "model" / "config.json").read_text())
    assert (model["pad_id"], model["bos_id"], model["eos_id"]) == (None, end, end)
    for text in [*PROMPTS, " two  spaces\tand a tab ", "ünïcödé ✓ 🙂"]:  # bytes never seen in training too
        assert tok.encode(text) == ref(text)["input_ids"]
        assert tok.decode(tok.encode(text)) == text
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # any ids but <|endoftext|> (a decode stops there; generate's new tokens hold none)
        ids = torch.randint(0, end, (12,), generator=gen).tolist()
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("beam", [1, 4])
def test_generate_gives_what_transformers_generate_gives(gpt2, imported, beam):
    expected = hf_continue(gpt2, PROMPTS, beam)
    assert len(set(expected)) > 3 and any(len(e.split()) > 3 for e in expected)  # prompt-dependent, and ending
    assert cli_generate(imported, PROMPTS, beam) == expected


def test_serve_answers_what_transformers_generate_gives(gpt2, imported):
    from serve_helpers import request, served_app

    from tformer.cli.serve import served
    from tformer.serving.app import create_app
    from tformer.serving.limits import Limits

    model, example = served(str(imported), "cpu")
    with served_app(create_app(model, Limits(max_texts=16), name="gpt2", example=example)) as url:
        status, info = request(url, "/info")
        assert status == 200 and info["task"] == "lm" and info["endpoint"] == "generate"
        status, got = request(url, "/generate", {"prompts": PROMPTS, "max_new_tokens": 24})
    assert status == 200
    assert [out["continuation"] for out in got["outputs"]] == hf_continue(gpt2, PROMPTS, 1)


def test_the_run_config_says_lm_and_the_architecture(imported):
    from tformer.training.config_file import read_run_config

    cfg = read_run_config(imported / "config.yaml")
    model = json.loads((imported / "model" / "config.json").read_text())
    assert cfg.task == "lm" and cfg.run_dir == str(imported)
    assert SimpleNamespace(**cfg.model).d_model == model["d_model"] and "vocab_size" not in cfg.model


@pytest.mark.parametrize(("change", "message"), [
    ({"drop": ("tokenizer.json",)}, r"has no tokenizer\.json"),
    ({"eos_token_id": 3}, r"the tokenizer's eos id is \d+ \('<\|endoftext\|>'\) but the model's is 3"),
    ({"pad_token_id": 0}, r"the tokenizer's pad id is \d+ \('<\|endoftext\|>'\) but the model's is 0"),
    ({"add_cross_attention": True}, r"tformer does not build GPT-2 with cross-attention"),
    ({"architectures": ["GPT2ForSequenceClassification"]}, r"holds a GPT2ForSequenceClassification; tformer imports "
                                                            r"GPT2LMHeadModel or GPT2Model"),
    ({"n_embd": 64}, r"the weights. transformer\.\S+ has shape \(\d+,.*\); its config\.json describes"),
])
def test_a_folder_that_does_not_fit_is_one_line(gpt2, tmp_path, change, message):
    folder = edited_copy(gpt2, tmp_path / "bad", **change)
    with pytest.raises(TformerError) as e:
        import_folder(folder, tmp_path / "run")
    assert re.search(message, str(e.value)) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
