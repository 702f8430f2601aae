"""The HTTP API and web page of ``tformer serve``: ``create_app(translator, limits)`` -> a FastAPI app.

    POST /translate   {"texts": [...], "beam_size": 4, "alpha": 0.6, "max_len": null, "nbest": 0, "scores": false}
    POST /attention   {"text": "...", "target": null, "beam_size": 4, "alpha": 0.6} -> tokens and weights
    GET  /health      liveness and the batching counters
    GET  /info        model config, parameter count, tokenizer, version, limits
    GET  /openapi.json, and the page at /

A bad request (malformed JSON, a wrong type, an unknown field, a value over a limit) gets a 4xx whose body is
``{"detail": "<one line that says what was wrong>"}``, and the server goes on serving.
"""

import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from tformer.errors import TformerError
from tformer.generation import Feature, GenerationOptions
from tformer.serving.batcher import RequestBatcher
from tformer.serving.limits import Limits
from tformer.serving.schemas import AttentionResponse, Health, Info, TranslateResponse, request_models
from tformer.translator import SentenceAttention, Translator
from tformer.version import VERSION as __version__

log = logging.getLogger("tformer.serving")


def create_app(translator: Translator, limits: Limits | None = None, *, name: str = "") -> FastAPI:
    """Build the app that serves ``translator``.

    Args:
        translator: The model and tokenizers; every model call runs in one worker thread.
        limits: Per-request limits and batching settings (default :class:`Limits`).
        name: What to call the model on the page and in ``/info`` (e.g. the run directory's name).

    Returns:
        A FastAPI app; run it with uvicorn. Its batcher starts and stops with the app's lifespan.

    Raises:
        TformerError: the model lacks what the API serves (beam search, n-best lists, attention maps).
    """
    translator.capabilities.require(Feature.BEAM, Feature.NBEST, Feature.ATTENTION_MAPS, what="tformer serve")
    limits = limits or Limits()
    batcher = RequestBatcher(translator, max_batch_texts=limits.max_batch_texts, wait_ms=limits.batch_wait_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="tformer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Translate with a Transformer and look at its attention.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes())
    _add_error_handlers(app)
    _add_model_routes(app, translator, limits, batcher)
    _add_status_routes(app, model_info(translator, limits, name), batcher)
    return app


def model_info(translator: Translator, limits: Limits, name: str) -> Info:
    """What ``GET /info`` answers: the model's config and size, the tokenizer, tformer's version, the limits."""
    vocabs = translator.vocabs
    return Info(
        version=__version__,
        name=name,
        model=translator.model.cfg.to_dict(),
        parameters=translator.model.num_parameters(),
        device=str(translator.device),
        tokenizer={"shared": vocabs.shared, "source": repr(vocabs.src), "target": repr(vocabs.tgt),
                   "source_vocab_size": vocabs.src.vocab_size, "target_vocab_size": vocabs.tgt.vocab_size},
        limits=asdict(limits),
    )


def _add_error_handlers(app: FastAPI) -> None:
    """A bad request and a user error each get one line: ``{"detail": "..."}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_errors(exc.errors())
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(TformerError)
    async def _user_error(_request: Request, exc: TformerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)


def _add_model_routes(app: FastAPI, translator: Translator, limits: Limits, batcher: RequestBatcher) -> None:
    """``POST /translate`` and ``POST /attention``: the routes that call the model."""
    TranslateRequest, AttentionRequest = request_models(limits, translator.model.cfg.max_len)
    vocabs = translator.vocabs

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        """Translate ``texts``; concurrent requests with equal settings share one model call."""
        nbest = req.nbest or (1 if req.scores else 0)
        options = GenerationOptions(beam_size=req.beam_size, length_penalty=req.alpha, max_len=req.max_len,
                                    nbest=nbest or None)
        results = await batcher.translate(req.texts, options)
        if not nbest:
            return {"translations": results}
        out: dict[str, Any] = {"translations": [hyps[0][0] for hyps in results]}
        if req.scores:
            out["scores"] = [hyps[0][1] for hyps in results]
        if req.nbest:
            out["nbest"] = [[{"text": text, "score": score} for text, score in hyps] for hyps in results]
        return out

    @app.post("/attention", response_model=AttentionResponse)
    async def attention(req: AttentionRequest) -> JSONResponse:
        """Tokens and every attention weight of one sentence (its translation, or ``target`` teacher-forced)."""
        if not req.text.strip():
            raise HTTPException(422, "text: must not be blank")
        n = len(vocabs.src.encode(req.text)) + 1
        if n > limits.max_attention_tokens:
            raise HTTPException(422, f"text: {n} tokens (with </s>) is more than /attention's limit of "
                                     f"{limits.max_attention_tokens}")
        def weights() -> dict[str, Any]:  # in the model thread, lists included: the event loop stays free
            return attention_json(translator.attention(req.text, target=req.target, beam_size=req.beam_size,
                                                       length_penalty=req.alpha, warn=log.warning))

        return JSONResponse(await batcher.call(weights))  # not validated again: ~10^5 floats would be slow


def _add_status_routes(app: FastAPI, info: Info, batcher: RequestBatcher) -> None:
    """``GET /health``, ``GET /info`` and the page at ``/``."""
    page = resources.files("tformer.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    started = time.monotonic()

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness, uptime and how many requests shared model calls."""
        return {"status": "ok", "uptime_s": round(time.monotonic() - started, 3), "batching": asdict(batcher.stats)}

    @app.get("/info", response_model=Info)
    async def get_info() -> Info:
        """The model's config, parameter count, tokenizer, tformer's version and the request limits."""
        return info

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)


def attention_json(a: SentenceAttention) -> dict[str, Any]:
    """A :class:`SentenceAttention` as JSON-ready lists, weights rounded to 5 decimals."""

    def weights(layers: list) -> list:
        return [w.double().mul(1e5).round().div(1e5).tolist() for w in layers]  # per layer (H, rows, cols)

    return {
        "source": a.source,
        "translation": a.translation,
        "source_tokens": a.source_tokens,
        "target_input_tokens": a.target_input_tokens,
        "target_output_tokens": a.target_output_tokens,
        "encoder": weights(a.encoder),
        "decoder_self": weights(a.decoder_self),
        "decoder_cross": weights(a.decoder_cross),
    }


def describe_errors(errors: list[dict[str, Any]]) -> tuple[int, str]:
    """One line for pydantic's validation errors, and the status: 400 for malformed JSON, else 422."""
    for e in errors:
        if e["type"] == "json_invalid":
            where = f" at character {e['loc'][-1]}" if len(e["loc"]) > 1 else ""
            return 400, f"malformed JSON{where}: {e.get('ctx', {}).get('error', e['msg'])}"
    parts = [_describe(e) for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


def _describe(e: dict[str, Any]) -> str:
    where = _field_path(e["loc"])
    kind, value = e["type"], e.get("input")
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"{where}: required" if where else "the request body is missing: send a JSON object"
    if not where and isinstance(value, (bytes, bytearray)):  # FastAPI parses JSON only when the header says so
        return "the request body must be JSON, sent with the header Content-Type: application/json"
    if not where and kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"the request body must be a JSON object (got {_short_json(value)})"
    message = e["msg"].removeprefix("Value error, ")
    if kind == "string_too_long" and isinstance(value, str):
        message += f" (got {len(value)})"
    elif kind.endswith("_type") or kind.startswith(("greater_than", "less_than")):
        message += f" (got {_short_json(value)})"
    return f"{where}: {message}" if where else f"request body: {message}"


def _field_path(loc: tuple) -> str:
    """('body', 'texts', 3) -> 'texts[3]'."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _short_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before anything parses it.

    The rest of an over-long body is read and dropped (up to ``drain_bytes``) so that a client that sends
    its whole body before reading the answer gets the 413 rather than a broken connection.
    """

    def __init__(self, app: Any, max_bytes: int, drain_bytes: int = 16 * 2**20) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.drain_bytes:
            await self._reject(scope, receive, send)  # not worth reading: the connection closes
            return
        body, seen, more = bytearray(), 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            more = message.get("more_body", False)
            if seen <= self.max_bytes:
                body += chunk
            elif not more or seen > self.drain_bytes:
                await self._reject(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        detail = f"request body is larger than this server's limit of {self.max_bytes} bytes"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
