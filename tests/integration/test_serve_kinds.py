"""`tformer serve` serves every kind of run: the run's task picks the route (/translate, /predict, /generate), the
answers are the run's predictor's, /info names an example the page opens with, and Schemathesis, fuzzing each
server from its own OpenAPI schema, finds no 5xx and no answer that breaks the schema.

Each server is a real uvicorn server on loopback, built the way `tformer serve RUN` builds it.
"""

import urllib.request
from types import SimpleNamespace

import pytest
from serve_helpers import fuzz, served_app
from serve_helpers import request as http

from tformer.cli.serve import served
from tformer.serving.app import create_app
from tformer.serving.limits import Limits
from tformer.tasks import open_run

KINDS = ["translation", "classify", "vision", "lm", "asr", "qa", "summarization"]
RUNS = {"translation": "trained_run", "classify": "classify_run", "vision": "vision_run", "lm": "lm_run",
        "asr": "asr_run", "qa": "qa_run", "summarization": "summarization_run"}
ROUTES = {"translation": "/translate", "classify": "/predict", "vision": "/predict", "lm": "/generate",
          "asr": "/predict", "qa": "/predict", "summarization": "/predict"}


@pytest.fixture(scope="module", params=KINDS)
def server(request):
    run_dir = request.getfixturevalue(RUNS[request.param])
    if isinstance(run_dir, tuple):  # (the run or its data folder, the run's summary)
        run_dir = run_dir[0] if request.param == "qa" else run_dir[0] / "run"
    model, example = served(str(run_dir), "cpu")
    limits = Limits(max_texts=8, max_chars=200, max_beam=4, max_context_chars=2000, batch_wait_ms=5)
    with served_app(create_app(model, limits, name=run_dir.name, example=example)) as url:
        yield SimpleNamespace(kind=request.param, url=url, run_dir=run_dir, model=model, limits=limits)


def test_info_names_the_task_its_route_and_an_example(server):
    status, info = http(server.url, "/info")
    assert status == 200 and info["task"] == server.kind and "/" + info["endpoint"] == ROUTES[server.kind]
    assert info["example"] is not None and info["parameters"] > 0
    status, schema = http(server.url, "/openapi.json")
    routes = set(schema["paths"])
    assert ROUTES[server.kind] in routes
    assert not (set(ROUTES.values()) - {ROUTES[server.kind]}) & routes  # only its own route
    page = urllib.request.urlopen(server.url + "/", timeout=30).read().decode()
    assert ('id="fields"' in page) == (server.kind != "translation")  # predict.html adapts to the task


def test_the_answers_are_the_run_predictors(server):
    if server.kind == "translation":
        pytest.skip("translation's answers are checked against its Translator in test_serve_api.py")
    predictor = open_run(server.run_dir)
    _, info = http(server.url, "/info")
    if server.kind == "lm":
        prompts = [info["example"], "five", "three"]
        status, got = http(server.url, "/generate", {"prompts": prompts, "max_new_tokens": 6})
        assert status == 200 and got["outputs"] == predictor.predict(prompts, max_len=6, min_len=0, beam_size=1,
                                                                      length_penalty=0.0, do_sample=False)
        status, beam = http(server.url, "/generate", {"prompts": prompts, "max_new_tokens": 6, "beam_size": 3})
        assert status == 200 and beam["outputs"] == predictor.predict(prompts, max_len=6, beam_size=3,
                                                                      length_penalty=0.0)
        body = {"prompts": prompts, "max_new_tokens": 6, "sample": True, "seed": 3, "top_k": 5}
        assert http(server.url, "/generate", body) == http(server.url, "/generate", body)  # seeded
        status, err = http(server.url, "/generate", {"prompts": ["a"], "temperature": 0.5})
        assert status == 422 and "only applies when sampling" in err["detail"] and "\n" not in err["detail"]
        return
    if server.kind == "asr":  # the example utterance, and a second one: the first half of it
        half = {**info["example"], "samples": info["example"]["samples"][: len(info["example"]["samples"]) // 2]}
        status, got = http(server.url, "/predict", {"inputs": [info["example"], half]})
        assert status == 200 and got["outputs"] == predictor.predict([info["example"], half], files=False)
        assert all(isinstance(out["transcript"], str) for out in got["outputs"])
        return
    if server.kind in ("qa", "summarization"):
        other = ({**info["example"], "question": "Where is Mary?"} if server.kind == "qa" else
                 "zorpblix is a small editor for maps written with care. It also reads logs.")
        options = {"beam_size": 2, "length_penalty": 0.6, "min_len": 0, "max_len": None, "no_repeat_ngram_size": 0}
        body = {"inputs": [info["example"], other], **({"beam_size": 2} if server.kind == "summarization" else {})}
        status, got = http(server.url, "/predict", body)
        want = predictor.predict([info["example"], other], **(options if server.kind == "summarization" else {}))
        assert status == 200 and got["outputs"] == want
        return
    inputs = [info["example"], info["example"]] if server.kind == "vision" else [info["example"], "sieben", "five"]
    status, got = http(server.url, "/predict", {"inputs": inputs})
    assert status == 200 and got["outputs"] == predictor.predict(inputs)
    for out in got["outputs"]:
        assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert out["label"] == max(out["probabilities"], key=out["probabilities"].get)
    assert set(got["outputs"][0]["probabilities"]) == set(info["labels"])


def test_bad_inputs_get_one_line_4xx(server):
    route = ROUTES[server.kind]
    field = {"/translate": "texts", "/predict": "inputs", "/generate": "prompts"}[route]
    item = {"question": "q", "context": "c"} if server.kind == "qa" else "x"
    for body, status in [({field: []}, 422), ({field: [item] * 9}, 422), ({field: [item], "colour": 1}, 422),
                         ({field: "not a list"}, 422)]:
        got, answer = http(server.url, route, body)
        assert got == status and isinstance(answer["detail"], str) and "\n" not in answer["detail"], (body, answer)
    got, answer = http(server.url, route, raw=b"{not json")
    assert got == 400 and answer["detail"].startswith("malformed JSON")
    if server.kind == "vision":
        got, answer = http(server.url, route, {"inputs": [{"pixels": [[1, 2], [3]]}]})
        assert got == 422 and "\n" not in answer["detail"], answer
    if server.kind in ("vision", "asr"):  # a server opens no file a request names
        got, answer = http(server.url, route, {"inputs": [str(server.run_dir / "config.yaml")]})
        assert got == 422, answer


def test_a_text_classifier_shows_its_cls_attention(server):
    if server.kind != "classify":
        pytest.skip("the [CLS] attention belongs to text classifiers")
    status, att = http(server.url, "/attention", {"text": "three hundred twenty-one"})
    assert status == 200 and att["tokens"][0] == "<s>"
    num_layers, s = len(att["heads"]), len(att["tokens"])
    assert num_layers == 2 and all(len(row) == s for layer in att["heads"] for row in layer)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-4) for layer in att["heads"] for row in layer)


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(server, tmp_path):
    r = fuzz(server.url, tmp_path, examples=5)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "generated" in r.stdout


@pytest.mark.slow
def test_schemathesis_coverage_phase_finds_nothing_either(server, tmp_path):
    """The coverage phase too: boundary values, wrong types and missing fields of every field (found a 500 on a
    temperature of 5e-324, since fixed)."""
    r = fuzz(server.url, tmp_path, examples=25, coverage=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
