"""`tformer serve`'s HTTP API on a real uvicorn server (loopback, a free port) over the tiny trained run.

The server runs in a thread of this process so that its answers can be compared with the same
Translator's; the browser test (test_serve_browser.py) runs `tformer serve` itself in a subprocess.
"""

import json
import re
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from serve_helpers import request, served_app

from tformer import Translator, __version__
from tformer.cli.main import main as tformer_main
from tformer.serving.app import create_app
from tformer.serving.limits import Limits

SENTENCES = ["three hundred twenty-one", "five", "nine hundred ninety-nine", "forty-two", "one hundred seven",
             "eight hundred", "sixty-six", "two hundred thirteen"]


@pytest.fixture(scope="module")
def server(trained_run):
    translator = Translator.from_pretrained(trained_run)
    limits = Limits(max_texts=8, max_chars=200, max_beam=8, max_attention_tokens=64, batch_wait_ms=25)
    with served_app(create_app(translator, limits, name=trained_run.name)) as url:
        yield SimpleNamespace(url=url, translator=translator, limits=limits)


def assert_serving(server) -> None:
    status, body = request(server.url, "/health")
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize("beam", [1, 4])
def test_translations_equal_the_translators(server, beam):
    texts = SENTENCES[:7] + [""]
    status, body = request(server.url, "/translate", {"texts": texts, "beam_size": beam})
    assert status == 200
    assert body == {"translations": server.translator.translate(texts, beam_size=beam)}


def test_nbest_and_scores_equal_the_translators(server):
    status, body = request(server.url, "/translate", {"texts": SENTENCES[:3], "beam_size": 4, "nbest": 3,
                                                      "scores": True, "alpha": 1.0, "max_len": 30})
    assert status == 200
    want = server.translator.translate_nbest(SENTENCES[:3], beam_size=4, nbest=3, length_penalty=1.0, max_len=30)
    assert body["nbest"] == [[{"text": t, "score": pytest.approx(s)} for t, s in hyps] for hyps in want]
    assert body["translations"] == [hyps[0][0] for hyps in want]
    assert body["scores"] == pytest.approx([hyps[0][1] for hyps in want])
    status, body = request(server.url, "/translate", {"texts": SENTENCES[:2], "scores": True})
    assert status == 200 and set(body) == {"translations", "scores"} and len(body["scores"]) == 2


def test_attention_shapes_match_the_tokens_and_rows_sum_to_one(server):
    status, a = request(server.url, "/attention", {"text": SENTENCES[0], "beam_size": 4})
    assert status == 200
    cfg = server.translator.model.cfg
    assert a["translation"] == server.translator.translate([SENTENCES[0]], beam_size=4)[0]
    S, T, H = len(a["source_tokens"]), len(a["target_input_tokens"]), cfg.num_heads
    assert a["source_tokens"][-1] == "</s>" and a["target_input_tokens"][0] == "<s>"
    assert len(a["target_output_tokens"]) == T and a["target_output_tokens"][-1] == "</s>"
    for kind, layers, rows, cols in [("encoder", cfg.num_encoder_layers, S, S),
                                     ("decoder_self", cfg.num_decoder_layers, T, T),
                                     ("decoder_cross", cfg.num_decoder_layers, T, S)]:
        assert len(a[kind]) == layers
        for heads in a[kind]:
            assert len(heads) == H
            for m in heads:
                assert len(m) == rows and all(len(row) == cols for row in m)
                assert all(abs(sum(row) - 1) < 1e-3 for row in m), kind
    for heads in a["decoder_self"]:  # the future never leaks
        assert all(m[t][u] == 0 for m in heads for t in range(T) for u in range(t + 1, T))
    status, forced = request(server.url, "/attention", {"text": SENTENCES[1], "target": "fünf"})
    assert status == 200 and forced["translation"] == "fünf"


def test_info_health_openapi_and_page(server):
    status, info = request(server.url, "/info")
    assert status == 200
    model = server.translator.model
    assert info["version"] == __version__ and info["model"] == model.cfg.to_dict()
    assert info["parameters"] == model.num_parameters() > 0
    assert info["tokenizer"]["shared"] is True and info["tokenizer"]["source_vocab_size"] == model.cfg.vocab_size
    assert info["limits"]["max_texts"] == 8
    status, health = request(server.url, "/health")
    assert status == 200 and health["status"] == "ok" and "model_calls" in health["batching"]
    status, schema = request(server.url, "/openapi.json")
    assert status == 200 and {"/translate", "/attention", "/health", "/info"} <= set(schema["paths"])
    texts = schema["components"]["schemas"]["TranslateRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 8 and texts["items"]["maxLength"] == 200
    with urllib.request.urlopen(server.url + "/", timeout=30) as r:
        page = r.read().decode()
    assert r.headers["content-type"].startswith("text/html") and "<svg" in page
    external = r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["'`](https?:)?//"""
    assert not re.search(external, page)  # works offline: the page loads nothing from elsewhere


BAD = [  # (raw body, status, what the message must say)
    (b'{"texts": ["five"', 400, "malformed JSON"),
    (b"", 422, "request body is missing"),
    (b"[1, 2]", 422, "must be a JSON object"),
    (b'{"texts": []}', 422, "texts: List should have at least 1 item"),
    (b'{"texts": "five"}', 422, "texts: Input should be a valid list"),
    (b'{"texts": [5]}', 422, "texts[0]: Input should be a valid string (got 5)"),
    (b'{"beam_size": 4}', 422, "texts: required"),
    (b'{"texts": ["five"], "beam": 4}', 422, "unknown field 'beam'"),
    (b'{"texts": ["five"], "beam_size": "4"}', 422, "beam_size: Input should be a valid integer"),
    (b'{"texts": ["five"], "beam_size": 0}', 422, "beam_size: Input should be greater than or equal to 1"),
    (b'{"texts": ["five"], "beam_size": 1000}', 422, "beam_size: Input should be less than or equal to 8 (got 1000)"),
    (b'{"texts": ["five"], "beam_size": 2, "nbest": 3}', 422, "nbest (3) must not exceed beam_size (2)"),
    (b'{"texts": ["five"], "max_len": 100000}', 422, "max_len: Input should be less than or equal to"),
    (json.dumps({"texts": ["five"] * 9}).encode(), 422, "texts: List should have at most 8 items"),
    (json.dumps({"texts": ["x" * 201]}).encode(), 422, "texts[0]: String should have at most 200 characters (got 201)"),
]


@pytest.mark.parametrize("raw, status, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_translate_requests_get_a_clear_4xx_and_the_server_goes_on(server, raw, status, message):
    got, body = request(server.url, "/translate", raw=raw)
    assert got == status and message in body["detail"], body
    assert "\n" not in body["detail"]
    assert_serving(server)


@pytest.mark.parametrize("body, message", [
    ({"text": ""}, "text: String should have at least 1 character"),
    ({"text": "   "}, "text: must not be blank"),
    ({"text": "five", "layer": 1}, "unknown field 'layer'"),
    ({"text": ["five"]}, "text: Input should be a valid string"),
    ({"text": "five " * 30}, "limit of 64"),
])
def test_bad_attention_requests_get_a_clear_4xx(server, body, message):
    status, answer = request(server.url, "/attention", body)
    assert status == 422 and message in answer["detail"], answer
    assert_serving(server)


def test_a_body_not_sent_as_json_says_how_to_send_it(server):
    status, body = request(server.url, "/translate", raw=b'{"texts": ["five"]}',
                           content_type="application/x-www-form-urlencoded")  # what curl -d sends
    assert status == 422 and "Content-Type: application/json" in body["detail"]


def test_a_huge_body_is_refused_before_parsing(server):
    status, body = request(server.url, "/translate", raw=json.dumps({"texts": ["x" * 10**6]}).encode())
    assert status == 413 and "larger than this server's limit" in body["detail"]
    assert_serving(server)


def test_concurrent_requests_share_a_model_call_with_unbatched_results(server):
    _, before = request(server.url, "/health")
    barrier = threading.Barrier(len(SENTENCES))

    def one(text):
        barrier.wait()
        return request(server.url, "/translate", {"texts": [text], "beam_size": 3})

    with ThreadPoolExecutor(len(SENTENCES)) as pool:
        answers = list(pool.map(one, SENTENCES))
    _, after = request(server.url, "/health")
    assert [a[0] for a in answers] == [200] * len(SENTENCES)
    alone = [server.translator.translate([t], beam_size=3)[0] for t in SENTENCES]
    assert [a[1]["translations"][0] for a in answers] == alone
    b0, b1 = before["batching"], after["batching"]
    assert b1["requests"] - b0["requests"] == len(SENTENCES)
    assert b1["model_calls"] - b0["model_calls"] < len(SENTENCES)
    assert b1["batched_requests"] > b0["batched_requests"] and b1["largest_call"] >= 2


def test_bounded_load_gives_no_5xx(server):
    """64 requests from 8 concurrent clients, some of them bad: every answer is 2xx or 4xx, none 5xx."""
    bodies = [{"texts": SENTENCES[i % 8: i % 8 + 1 + i % 3], "beam_size": 1 + i % 4} for i in range(56)]
    bodies += [{"texts": []}, {"texts": ["five"], "beam_size": 99}, {"oops": 1}, {"texts": [1]}] * 2

    def one(body):
        t0 = time.perf_counter()
        status, _ = request(server.url, "/translate", body)
        return status, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - t0
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 56 and statuses.count(422) == 8
    latencies = sorted(t for _, t in results)
    print(f"load: {len(bodies)} requests, 8 clients: {len(bodies) / wall:.1f} req/s, "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    assert_serving(server)


def test_cli_errors_are_one_line_and_exit_2(trained_run, tmp_path, capsys, monkeypatch):
    assert tformer_main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run directory not found" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert tformer_main(["serve", str(trained_run), "--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1:" in err
    assert tformer_main(["serve", str(trained_run), "--max-beam", "0"]) == 2
    assert "max-beam must be >= 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    assert tformer_main(["serve", str(trained_run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'tformer[serve]'" in err


def test_a_cmlm_is_served_by_mask_predict(trained_run, tmp_path):
    from serve_helpers import fuzz, served_app

    from tformer.generation import GenerationOptions
    from tformer.models.cmlm.config import CMLMConfig
    from tformer.models.cmlm.model import CMLM

    vocabs = Translator.from_pretrained(trained_run).vocabs
    torch.manual_seed(0)
    cmlm = Translator(CMLM(CMLMConfig.tiny(vocab_size=vocabs.src.vocab_size)).eval(), vocabs)
    with served_app(create_app(cmlm, Limits(max_texts=4))) as url:
        status, got = request(url, "/translate", {"texts": SENTENCES[:3], "iterations": 4, "length_candidates": 2})
        assert status == 200
        options = GenerationOptions(iterations=4, length_candidates=2)
        assert got["translations"] == cmlm.translate(SENTENCES[:3], options)
        status, info = request(url, "/info")
        assert info["task"] == "cmlm" and "mask_predict" in info["features"] and "beam" not in info["features"]
        status, err = request(url, "/translate", {"texts": ["a"], "beam_size": 4})
        assert status == 422 and err["detail"] == "unknown field 'beam_size'"
        assert request(url, "/attention", {"text": "a"})[0] == 404  # no attention maps to show
        fuzzed = fuzz(url, tmp_path, examples=3)
        assert fuzzed.returncode == 0, fuzzed.stdout[-4000:]
