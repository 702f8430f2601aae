"""The HTTP API and web page of ``tformer serve``: ``create_app(served, limits)`` -> a FastAPI app.

What is served decides the routes and the page:

* a :class:`~tformer.translator.Translator` (a translation run): ``POST /translate`` and ``POST /attention``
  (:mod:`tformer.serving.translation`), the attention page;
* a run of any other task, through its predictor (:class:`tformer.tasks.predictor.Predictor`):
  ``POST /predict`` (classifiers, vision, question answering, summarization) or ``POST /generate`` (language
  models), and a text classifier's ``POST /attention`` (:mod:`tformer.serving.predictions`); a page that adapts
  to the task.

Every server also answers ``GET /health`` (liveness and the batching counters), ``GET /info`` (the task, the
model, an example input, the limits), ``GET /openapi.json`` and the page at ``/``, which opens with the example
already answered.

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

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from tformer.errors import TformerError
from tformer.serving.batcher import RequestBatcher
from tformer.serving.limits import Limits
from tformer.serving.predictions import PredictionService, ServedPredictor
from tformer.serving.schemas import Health, Info
from tformer.serving.translation import TranslationService
from tformer.translator import Translator
from tformer.version import VERSION as __version__

log = logging.getLogger("tformer.serving")


def create_app(served: Translator | ServedPredictor, limits: Limits | None = None, *, name: str = "",
               example: str | None = None) -> FastAPI:
    """Build the app that serves ``served``.

    Args:
        served: A translator, or the predictor of a run of another task; every model call runs in one worker
            thread.
        limits: Per-request limits and batching settings (default :class:`Limits`).
        name: What to call the model on the page and in ``/info`` (e.g. the run directory's name).
        example: For a translator, a sentence the page opens with (a predictor has its own).

    Returns:
        A FastAPI app; run it with uvicorn. Its batcher starts and stops with the app's lifespan.

    Raises:
        TformerError: the model lacks what the API serves (beam search, n-best lists, attention maps).
    """
    limits = limits or Limits()
    if isinstance(served, Translator):
        service = TranslationService(served, limits, name, example)
        max_body = limits.max_body_bytes()
    else:
        service = PredictionService(served, limits, name)
        max_body = service.max_body_bytes()
    batcher = RequestBatcher(service.decode, max_batch_texts=limits.max_batch_texts, wait_ms=limits.batch_wait_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="tformer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Use a trained Transformer over HTTP, and look inside it.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=max_body)
    _add_error_handlers(app)
    service.add_routes(app, batcher)
    _add_status_routes(app, service.info(), batcher, service.page)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """A bad request and a user error each get one line: ``{"detail": "..."}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_errors(exc.errors())
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(TformerError)
    async def _user_error(_request: Request, exc: TformerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)


def _add_status_routes(app: FastAPI, info: Info, batcher: RequestBatcher, page_file: str) -> None:
    """``GET /health``, ``GET /info`` and the page at ``/``."""
    page = resources.files("tformer.serving").joinpath(f"static/{page_file}").read_text(encoding="utf-8")
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

    static = resources.files("tformer.serving").joinpath("static")
    shared = {name: (static.joinpath(name).read_text(encoding="utf-8"), media)
              for name, media in (("common.css", "text/css"), ("common.js", "text/javascript"))}

    @app.get("/static/{name}", include_in_schema=False)
    async def shared_file(name: str) -> Response:
        """What both pages share (their look and their API calls)."""
        if name not in shared:
            return JSONResponse({"detail": f"no such file: {name}"}, status_code=404)
        text, media = shared[name]
        return Response(text, media_type=media)


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
