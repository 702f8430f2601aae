"""What ``tformer serve`` serves for a run of any other task: ``POST /predict`` or ``POST /generate``.

The run's predictor (:class:`tformer.tasks.predictor.Predictor`, opened by the CLI with ``open_run``) names
the route (its ``endpoint``) and the type of an input (its ``input_kind``):

    POST /predict    {"inputs": ["a text", ...]}                          classify, summarization (+ beam_size, ...)
                     {"inputs": [{"question": "...", "context": "..."}]}    qa
                     {"inputs": [{"pixels": [[0, 16, ...], ...]}]}          vision
                     {"inputs": [{"pixels": [[[r, g, b], ...], ...]}]}      image_classify (0..255)
                     {"inputs": [{"frames": [[...13 MFCCs...], ...]}]}      audio_classify
                     {"inputs": [{"samples": [...], "sample_rate": 22050}]} asr
                     -> {"outputs": [{"label": ..., "probabilities": {...}}, ...]}  (the task's answer per input)
    POST /generate   {"prompts": ["..."], "max_new_tokens": 32, "beam_size": 1, "sample": false, ...}    lm
                     -> {"outputs": [{"prompt": ..., "continuation": ...}, ...]}
    POST /attention  {"text": "..."} -> the [CLS] token's attention in every layer (text classifiers)

Serving imports no task (the layers keep ``tasks`` and ``serving`` apart): a predictor is anything with the
attributes and methods of :class:`ServedPredictor`. The page is ``static/predict.html``, which adapts to the
task from ``GET /info``.
"""


import inspect
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar, Protocol

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from tformer.serving.batcher import RequestBatcher
from tformer.serving.limits import Limits
from tformer.serving.schemas import (
    ERROR_RESPONSES,
    MAX_FEATURES,
    MAX_FRAMES,
    MAX_IMAGE_SIDE,
    MAX_RGB_SIDE,
    MAX_SAMPLES,
    Answers,
    Info,
    cls_attention_request,
    generate_request,
    predict_request,
)
from tformer.version import VERSION as __version__


class ServedPredictor(Protocol):
    """What serving reads of a predictor (:class:`tformer.tasks.predictor.Predictor` satisfies it)."""

    task: ClassVar[str]
    endpoint: ClassVar[str]
    input_kind: ClassVar[str]
    decodes: ClassVar[bool]
    model: Any
    device: Any

    def predict(self, inputs: Sequence[Any], **options: Any) -> list[dict[str, Any]]: ...

    def example(self) -> Any: ...

    def info(self) -> dict[str, Any]: ...


class PredictionService:
    """A predictor behind the API: its batch function, its route, its ``/info`` and its page."""

    page = "predict.html"

    def __init__(self, predictor: ServedPredictor, limits: Limits, name: str = "") -> None:
        self.predictor, self.limits, self.name = predictor, limits, name
        # a server opens no file a request names: predictors that could read paths (images, audio) are told not to
        self.no_files = {"files": False} if "files" in inspect.signature(predictor.predict).parameters else {}
        self.model_max_len = int(getattr(getattr(predictor.model, "cfg", None), "max_len", 0) or 512)

    def decode(self, inputs: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        """The predictor's answers (in the model thread)."""
        return self.predictor.predict(inputs, **options, **self.no_files)

    def max_body_bytes(self) -> int:
        """The largest request body worth reading for this kind of input: texts at their limits, JSON-escaped
        (:meth:`Limits.max_body_bytes`); numbers (pixels, frames, samples) at 24 bytes each; at most 15 MiB."""
        numbers = {"image": MAX_IMAGE_SIDE**2, "rgb_image": 3 * MAX_RGB_SIDE**2, "frames": MAX_FRAMES * MAX_FEATURES,
                   "audio": MAX_SAMPLES}.get(self.predictor.input_kind)
        if numbers:
            return min(self.limits.max_texts * numbers * 24, 15 * 2**20) + 64 * 1024
        question = self.predictor.input_kind == "question"
        texts = self.limits.max_body_bytes(self.limits.max_chars + self.limits.max_context_chars if question else None)
        return min(texts, 15 * 2**20 + 64 * 1024)  # under BodyLimit's 16 MiB, above which nothing is read

    def info(self) -> Info:
        """What ``GET /info`` answers: the task, the route, an example input, the model and the limits."""
        p, model = self.predictor, self.predictor.model
        extra = p.info()
        cfg = getattr(model, "cfg", None)
        return Info(
            version=__version__, name=self.name, task=p.task, endpoint=p.endpoint, input_kind=p.input_kind,
            example=_json_ready(p.example()), model=extra.get("model") or (cfg.to_dict() if cfg is not None else {}),
            parameters=sum(t.numel() for t in model.parameters()), device=str(p.device),
            labels=extra.get("labels"), limits=asdict(self.limits),
        )

    def add_routes(self, app: FastAPI, batcher: RequestBatcher) -> None:
        """``POST /predict`` or ``POST /generate`` (the predictor's endpoint), and ``POST /attention`` for a
        predictor that shows its [CLS] token's attention."""
        p = self.predictor
        if p.endpoint == "generate":
            self._add_generate(app, batcher)
        else:
            self._add_predict(app, batcher)
        if callable(getattr(p, "cls_attention", None)):
            self._add_cls_attention(app, batcher)

    def _add_predict(self, app: FastAPI, batcher: RequestBatcher) -> None:
        p = self.predictor
        Request = predict_request(self.limits, p.input_kind, p.decodes, self.model_max_len)

        @app.post("/predict", response_model=Answers, responses=ERROR_RESPONSES)
        async def predict(req: Request) -> dict[str, Any]:  # type: ignore[valid-type]
            """One answer per input; concurrent requests with equal settings share one model call."""
            inputs = [x.model_dump() if isinstance(x, BaseModel) else x for x in req.inputs]
            options = {}
            if p.decodes:
                options = {"beam_size": req.beam_size, "length_penalty": req.alpha, "min_len": req.min_len,
                           "max_len": req.max_len, "no_repeat_ngram_size": req.no_repeat_ngram_size}
            return {"outputs": await batcher.submit(inputs, options)}

    def _add_generate(self, app: FastAPI, batcher: RequestBatcher) -> None:
        Request = generate_request(self.limits, self.model_max_len)

        @app.post("/generate", response_model=Answers, responses=ERROR_RESPONSES)
        async def generate(req: Request) -> dict[str, Any]:  # type: ignore[valid-type]
            """Continue each prompt; concurrent requests with equal settings share one model call."""
            options = {"max_len": req.max_new_tokens, "min_len": req.min_new_tokens, "beam_size": req.beam_size,
                       "length_penalty": req.alpha, "no_repeat_ngram_size": req.no_repeat_ngram_size,
                       "do_sample": req.sample}
            sampling = {"temperature": req.temperature, "top_k": req.top_k, "top_p": req.top_p, "seed": req.seed}
            options.update({k: v for k, v in sampling.items() if v is not None})  # refused without sample: 422
            return {"outputs": await batcher.submit(list(req.prompts), options)}

    def _add_cls_attention(self, app: FastAPI, batcher: RequestBatcher) -> None:
        p = self.predictor
        Request = cls_attention_request(self.limits)

        @app.post("/attention", responses=ERROR_RESPONSES)
        async def attention(req: Request) -> dict[str, Any]:  # type: ignore[valid-type]
            """The tokens of ``text`` and, per layer, the attention of its [CLS] token (heads, tokens)."""
            if not req.text.strip():
                raise HTTPException(422, "text: must not be blank")
            return _json_ready(await batcher.call(p.cls_attention, req.text))


def _json_ready(value: Any) -> Any:
    """Tensors and tuples inside ``value`` as lists (floats rounded to 5 decimals), for a JSON answer."""
    if hasattr(value, "tolist"):
        value = value.double().mul(1e5).round().div(1e5).tolist() if value.is_floating_point() else value.tolist()
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
