"""configs/reference.yaml lists every key of a run config with its default and a comment, and cannot drift.

The file is a complete config of the default task (translation); each other task's keys are a commented-out
block that starts with ``# task: NAME`` and becomes YAML again when the leading ``# `` of its lines is removed.
Keys that a run fills in itself (the vocabulary sizes and special ids from the tokenizer, ViT's classes from the
data) are comment lines ``# key: (from the tokenizer) ...`` in their section. The defaults are the config
classes' (``dataclasses.fields``); a model section's are its preset's, built the way the task builds it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tformer.config import ConfigError
from tformer.models.bert import EncoderOnlyForClassification
from tformer.models.bert.config import ClassifierConfig, EncoderOnlyConfig
from tformer.models.conformer.config import ConformerConfig
from tformer.models.gpt.config import DecoderOnlyConfig
from tformer.models.transformer.config import TransformerConfig
from tformer.models.vit.config import VisionConfig
from tformer.tasks import TASKS, asr, audio, classify, lm, load_run_config, parse_run_config, qa, vision
from tformer.training.config import DEFAULT_TASK, MODEL_PRESETS, RunConfig

REFERENCE = Path(__file__).resolve().parents[2] / "configs" / "reference.yaml"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
WITH_COMMENT = re.compile(r"^(?P<value>[^#]*?) +# +(?P<comment>\S.*)$")
DERIVED_LINE = re.compile(r"^  # (?P<key>\w+): \(from the (?:tokenizer|data)\) \S")
BLOCK_START = re.compile(r"^# task: (?P<task>\w+) ")

TOKENIZER_IDS = {"vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "unk_id"}


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """How a task builds its model config from the ``model`` section, and what the section documents."""

    config_class: type
    build: Callable[[dict], dict[str, Any]]  # the model section -> the model config the task builds, as a dict
    presets: tuple[str, ...]
    derived: frozenset[str]  # fields the run fills in itself (documented as comments)
    head: dict[str, Any] = dataclasses.field(default_factory=dict)  # keys beyond the config class, with defaults
    extends: type | None = None  # the block lists only the fields beyond this class's (cmlm: translation's model)


def _seq2seq(name: str) -> Callable[[dict], dict[str, Any]]:
    return lambda spec: RunConfig(model=spec).model_config(64, config_class=TASKS[name].config_class).to_dict()


def _lm(spec: dict) -> dict[str, Any]:
    return lm.model_config(RunConfig(task="lm", model=spec), 64).to_dict()


def _classify(spec: dict) -> dict[str, Any]:
    return classify.encoder_config(RunConfig(task="classify", model=spec), 64, 0).to_dict()


def _vision(spec: dict) -> dict[str, Any]:
    return vision.model_config(RunConfig(task="vision", model=spec)).to_dict()


def _audio(spec: dict) -> dict[str, Any]:
    return audio.model_config(RunConfig(task="audio_classify", model=spec)).to_dict()


def _asr(spec: dict) -> dict[str, Any]:
    return asr.model_config(RunConfig(task="asr", model=spec)).to_dict()


def _qa(spec: dict) -> dict[str, Any]:
    return qa.encoder_config(RunConfig(task="qa", model=spec), 64, 0).to_dict()


def _classifier_head() -> dict[str, Any]:
    """The classify task's keys beyond the encoder's config, with the defaults the task applies."""
    return {"init_from": None,  # no folder: a fresh encoder
            "pooling": ClassifierConfig.__dataclass_fields__["pooling"].default,
            "classifier_dropout": inspect.signature(EncoderOnlyForClassification).parameters["dropout"].default}


MODELS = {
    "translation": ModelSection(TransformerConfig, _seq2seq("translation"), MODEL_PRESETS,
                                frozenset(TOKENIZER_IDS | {"output_vocab"})),  # output_vocab: from data.output_vocab
    "cmlm": ModelSection(TASKS["cmlm"].config_class, _seq2seq("cmlm"), MODEL_PRESETS, frozenset(TOKENIZER_IDS),
                         extends=TransformerConfig),
    "lm": ModelSection(DecoderOnlyConfig, _lm, tuple(lm.PRESETS), frozenset({"vocab_size", "pad_id", "bos_id",
                                                                              "eos_id"})),
    "classify": ModelSection(EncoderOnlyConfig, _classify, tuple(classify.PRESETS), frozenset({"vocab_size", "pad_id"}),
                             head=_classifier_head()),
    "vision": ModelSection(VisionConfig, _vision, ("digits",), frozenset({"num_classes"})),
    "audio_classify": ModelSection(ConformerConfig, _audio, tuple(audio.PRESETS), frozenset(audio.DATA_KEYS)),
    "asr": ModelSection(ConformerConfig, _asr, tuple(asr.PRESETS), frozenset(asr.DATA_KEYS)),
    "qa": ModelSection(EncoderOnlyConfig, _qa, tuple(qa.PRESETS), frozenset({"vocab_size", "pad_id"}),
                       head={"init_from": None}),
    "summarization": ModelSection(TransformerConfig, _seq2seq("summarization"), MODEL_PRESETS,
                                  frozenset(TOKENIZER_IDS), extends=TransformerConfig),
}


# ---- reading the file --------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    first_line = 1  # the file's line number of the text's first line

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise AssertionError(f"{REFERENCE.name}: key(s) {', '.join(twice)} given twice in the section at line "
                                 f"{node.start_mark.line + self.first_line}")
        return super().construct_mapping(node, deep)


@dataclasses.dataclass
class Part:
    """The active config (``task`` = the default task) or one commented-out task block, as (line number, text)."""

    task: str
    lines: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def load(self) -> dict[str, Any]:
        loader = type("Loader", (_UniqueKeyLoader,), {"first_line": self.lines[0][0] if self.lines else 1})
        return yaml.load("\n".join(text for _, text in self.lines), Loader=loader) or {}

    def comments(self) -> dict[str, str]:
        """The comment of every key line, by dotted key path."""
        out, path = {}, []
        for _, text in self.lines:
            if m := KEY_LINE.match(text):
                depth = len(m["indent"]) // 2
                path = [*path[:depth], m["key"]]
                c = WITH_COMMENT.match(m["rest"])
                out[".".join(path)] = c["comment"] if c else ""
        return out

    def derived(self) -> dict[str, list[str]]:
        """The keys documented as filled in by the run, by section."""
        out: dict[str, list[str]] = {}
        section = ""
        for _, text in self.lines:
            if (m := KEY_LINE.match(text)) and not m["indent"]:
                section = m["key"]
            elif d := DERIVED_LINE.match(text):
                out.setdefault(section, []).append(d["key"])
        return out


@functools.cache
def parts() -> dict[str, Part]:
    """The file split into its active part and the commented task blocks (their leading ``# `` removed)."""
    found = {DEFAULT_TASK: Part(DEFAULT_TASK)}
    block = None
    for n, line in enumerate(REFERENCE.read_text(encoding="utf-8").splitlines(), 1):
        if m := BLOCK_START.match(line):
            assert m["task"] not in found, f"line {n}: a second block for task {m['task']}"
            block = found[m["task"]] = Part(m["task"])
        if block is not None and (line.startswith("# ") or line == "#"):
            block.lines.append((n, line[2:]))
            continue
        block = None
        found[DEFAULT_TASK].lines.append((n, "" if line.startswith("#") else line))  # (the numbers kept)
    return found


def part(task: str) -> Part:
    if task not in parts():
        pytest.fail(f"{REFERENCE.name} has no block for task {task}: add one that starts with '# task: {task} '")
    return parts()[task]


# ---- what the file should say ------------------------------------------------------------------------------
def field_defaults(cls: type) -> dict[str, Any]:
    """The defaults of dataclass ``cls`` (default_factory called, nested dataclasses as mappings), required
    fields left out."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def expected_model(task: str, documented_preset: Any) -> dict[str, Any]:
    """The model section of ``task`` as the file should document it: the fields with the default preset's values
    (the derived ones left out), and the head's keys."""
    m = MODELS[task]
    built = m.build({})
    keys = [f.name for f in dataclasses.fields(m.config_class) if f.name not in m.derived]
    if m.extends is not None:
        return {k: built[k] for k in keys if k not in {f.name for f in dataclasses.fields(m.extends)}}
    return {"preset": documented_preset, **m.head, **{k: built[k] for k in keys}}


def expected_part(task: str, documented: dict[str, Any]) -> dict[str, Any]:
    """What the part of ``task`` should hold: the whole run config for the default task, else the task's block."""
    settings = TASKS[task].Settings
    own = {task: field_defaults(settings)} if dataclasses.fields(settings) else {}
    model = {"model": expected_model(task, (documented.get("model") or {}).get("preset"))}
    if task != DEFAULT_TASK:
        return {"task": task, **own, **model}
    run = field_defaults(RunConfig)
    del run["task_settings"]  # the section named after the task
    return {**run, **own, **model}


def differences(where: str, documented: Any, expected: Any) -> list[str]:
    """One line per missing, extra or wrong key of ``documented`` against ``expected`` (nested mappings too)."""
    if isinstance(expected, dict):
        if not isinstance(documented, dict):
            return [f"{where or 'the file'}: expected a section of keys, got {documented!r}"]
        at = (lambda k: f"{where}.{k}") if where else str
        out = [f"{at(k)}: missing (its default is {v!r})" for k, v in expected.items() if k not in documented]
        out += [f"{at(k)}: not a key of the config (a typo, or a field that was removed?)"
                for k in documented if k not in expected]
        for k in expected.keys() & documented.keys():
            out += differences(at(k), documented[k], expected[k])
        return out
    if isinstance(expected, tuple):
        expected = list(expected)  # a tuple field is a YAML list
    if documented != expected or type(documented) is not type(expected):
        return [f"{where}: documented {documented!r}, but the default is {expected!r}"]
    return []


def report(task: str, problems: list[str]) -> str:
    where = "its active part" if task == DEFAULT_TASK else f"the block of task {task}"
    return f"{REFERENCE.name}, {where}:\n  " + "\n  ".join(problems)


# ---- the tests ---------------------------------------------------------------------------------------------
def test_the_reference_loads_as_a_run_config_of_the_default_task():
    cfg = load_run_config(REFERENCE)
    assert cfg.task == DEFAULT_TASK
    cfg.model_config(vocab_size=cfg.data.vocab_size)


def test_every_task_has_a_part():
    assert set(parts()) == set(TASKS), (f"{REFERENCE.name} documents tasks {sorted(parts())}, the registry has "
                                        f"{sorted(TASKS)}: add a commented block '# task: NAME' for each")
    assert set(MODELS) == set(TASKS), f"tell this test how the model section of {set(TASKS) - set(MODELS)} is built"
    assert {"preset", *MODELS["classify"].head} == set(classify.HEAD_KEYS), "classify's model keys changed"


@pytest.mark.parametrize("task", list(TASKS))
def test_every_key_is_there_once_with_its_default_and_no_other(task):
    documented = part(task).load()
    problems = differences("", documented, expected_part(task, documented))
    assert not problems, report(task, problems)


@pytest.mark.parametrize("task", list(TASKS))
def test_keys_the_run_fills_in_are_comments_in_the_model_section(task):
    m, derived = MODELS[task], part(task).derived()
    expected = {} if m.extends else {"model": sorted(m.derived)}
    assert {k: sorted(v) for k, v in derived.items()} == expected, report(task, [
        f"keys documented as '# key: (from the tokenizer|data) ...': {derived}, expected {expected}"])
    twice = sorted({k for keys in derived.values() for k in keys if keys.count(k) > 1})
    assert not twice, report(task, [f"{', '.join(twice)} documented twice"])
    assert m.derived <= {f.name for f in dataclasses.fields(m.config_class)}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_key_line_has_a_comment(task):
    problems = [f"line {n}: {m['key']} has no comment ('key: value   # what it does')"
                for n, text in part(task).lines
                if (m := KEY_LINE.match(text)) and not WITH_COMMENT.match(m["rest"])]
    assert not problems, report(task, problems)


def test_every_section_has_a_header_comment():
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), "the file starts with a comment saying what it is"
    sections = [(n, m["key"]) for n, text in part(DEFAULT_TASK).lines
                if (m := KEY_LINE.match(text)) and not m["indent"] and not WITH_COMMENT.match(m["rest"])["value"]]
    assert {key for _, key in sections} == {"data", "model", "train", DEFAULT_TASK}
    problems = [f"line {n}: section {key} has no header comment above it" for n, key in sections
                if not lines[n - 2].startswith("#")]
    assert not problems, report(DEFAULT_TASK, problems)


@pytest.mark.parametrize("task", list(TASKS))
def test_the_documented_preset_is_the_default_and_the_comments_name_the_presets(task):
    m = MODELS[task]
    if m.extends:
        return  # (the preset is the one of the model section it extends)
    comments = part(task).comments()
    preset = part(task).load()["model"].get("preset")
    assert preset in m.presets and m.build({"preset": preset}) == m.build({}), report(task, [
        f"model.preset: {preset!r} is not the preset a run gets without one"])
    problems = [f"model.preset: the comment does not name the preset {p}" for p in m.presets
                if p not in comments["model.preset"]]
    # a value the preset sets (not the dataclass default) says so, so that nobody reads it as the class's default
    built, defaults = m.build({}), field_defaults(m.config_class)
    problems += [f"model.{k}: {built[k]!r} comes from the preset ({defaults[k]!r} without it): say so in the comment"
                 for k in defaults if k not in m.derived and built[k] != defaults[k]
                 and "preset" not in comments.get(f"model.{k}", "")]
    assert not problems, report(task, problems)


@pytest.mark.parametrize("task", [t for t in TASKS if t != DEFAULT_TASK])
def test_each_task_block_in_place_of_the_default_task_is_a_valid_run_config(task):
    d = part(DEFAULT_TASK).load()
    block = part(task).load()
    del d[DEFAULT_TASK]
    model = {**d["model"], **block["model"]} if MODELS[task].extends else block["model"]
    d = {**d, **block, "model": model, "data": {**d["data"], "train_src": "digits" if task == "vision" else "x.txt"}}
    assert parse_run_config(d).task == task


@pytest.mark.parametrize("task", list(TASKS))
def test_the_keys_documented_as_filled_in_by_the_run_cannot_be_set(task):
    m = MODELS[task]
    for key in sorted(m.derived):
        try:
            built = m.build({key: 3})
        except ConfigError as e:
            assert "from the tokenizer" in str(e) or "from the training data" in str(e)  # output_vocab: the data's
        else:  # (vision: the classes are the data set's, whatever the section says)
            assert built[key] == m.build({})[key], f"model.{key} can be set: document it as a key, with its default"
