"""What ``tformer serve`` serves for a translation run: ``POST /translate`` and ``POST /attention``.

    POST /translate   {"texts": [...], "beam_size": 4, "alpha": 0.6, "max_len": null, "nbest": 0, "scores": false}
    POST /attention   {"text": "...", "target": null, "beam_size": 4, "alpha": 0.6} -> tokens and every weight

A non-autoregressive CMLM (a ``task: cmlm`` run) translates by mask-predict: its ``/translate`` takes
``{"texts": [...], "iterations": 10, "length_candidates": 3}``, and it has no ``/attention``.

The page is ``static/index.html``: a sentence, its translation, and every attention map of the model.
"""


import logging
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from tformer.generation import Feature, GenerationOptions
from tformer.serving.batcher import RequestBatcher
from tformer.serving.limits import Limits
from tformer.serving.schemas import (
    ERROR_RESPONSES,
    AttentionResponse,
    Info,
    TranslateResponse,
    mask_predict_request,
    request_models,
)
from tformer.translator import SentenceAttention, Translator
from tformer.version import VERSION as __version__

log = logging.getLogger("tformer.serving")


class TranslationService:
    """A :class:`Translator` behind the API: its batch function, its routes, its ``/info`` and its page.

    Raises:
        TformerError: the model lacks what the API serves (beam search, n-best lists, attention maps).
    """

    page = "index.html"

    def __init__(self, translator: Translator, limits: Limits, name: str = "", example: str | None = None) -> None:
        self.mask_predict = translator.capabilities.supports(Feature.MASK_PREDICT)
        if not self.mask_predict:
            translator.capabilities.require(Feature.BEAM, Feature.NBEST, Feature.ATTENTION_MAPS, what="tformer serve")
        self.translator, self.limits, self.name, self.example = translator, limits, name, example

    def decode(self, texts: list[str], options: GenerationOptions) -> list[Any]:
        """Translations of ``texts``: strings, or (text, score) lists, best first, when ``options.nbest`` is set."""
        if options.nbest is not None:
            return self.translator.translate_nbest(texts, options, warn=log.warning)
        return self.translator.translate(texts, options, warn=log.warning)

    def info(self) -> Info:
        """What ``GET /info`` answers: the model's config and size, the tokenizer, the version, the limits."""
        translator, vocabs = self.translator, self.translator.vocabs
        return Info(
            version=__version__, name=self.name, task="cmlm" if self.mask_predict else "translation",
            endpoint="translate", input_kind="text",
            features=sorted(f.name.lower() for f in translator.capabilities.features),
            example=self.example, model=translator.model.cfg.to_dict(), parameters=translator.model.num_parameters(),
            device=str(translator.device), limits=asdict(self.limits),
            tokenizer={"shared": vocabs.shared, "source": repr(vocabs.src), "target": repr(vocabs.tgt),
                       "source_vocab_size": vocabs.src.vocab_size, "target_vocab_size": vocabs.tgt.vocab_size},
        )

    def add_routes(self, app: FastAPI, batcher: RequestBatcher) -> None:
        """``POST /translate`` and ``POST /attention`` (mask-predict: ``POST /translate`` alone)."""
        if self.mask_predict:
            self._add_mask_predict(app, batcher)
            return
        translator, limits = self.translator, self.limits
        TranslateRequest, AttentionRequest = request_models(limits, translator.model.cfg.max_len)
        vocabs = translator.vocabs

        @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True,
                  responses=ERROR_RESPONSES)
        async def translate(req: TranslateRequest) -> dict[str, Any]:
            """Translate ``texts``; concurrent requests with equal settings share one model call."""
            nbest = req.nbest or (1 if req.scores else 0)
            options = GenerationOptions(beam_size=req.beam_size, length_penalty=req.alpha, max_len=req.max_len,
                                        nbest=nbest or None)
            results = await batcher.submit(req.texts, options)
            if not nbest:
                return {"translations": results}
            out: dict[str, Any] = {"translations": [hyps[0][0] for hyps in results]}
            if req.scores:
                out["scores"] = [hyps[0][1] for hyps in results]
            if req.nbest:
                out["nbest"] = [[{"text": text, "score": score} for text, score in hyps] for hyps in results]
            return out

        @app.post("/attention", response_model=AttentionResponse, responses=ERROR_RESPONSES)
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


    def _add_mask_predict(self, app: FastAPI, batcher: RequestBatcher) -> None:
        Request = mask_predict_request(self.limits)

        @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True,
                  responses=ERROR_RESPONSES)
        async def translate(req: Request) -> dict[str, Any]:  # type: ignore[valid-type]
            """Translate ``texts`` by mask-predict; concurrent requests with equal settings share one model call."""
            options = GenerationOptions(iterations=req.iterations, length_candidates=req.length_candidates)
            return {"translations": await batcher.submit(req.texts, options)}


def rounded(layers: list) -> list:
    """Per-layer weight tensors as lists, rounded to 5 decimals."""
    return [w.double().mul(1e5).round().div(1e5).tolist() for w in layers]


def attention_json(a: SentenceAttention) -> dict[str, Any]:
    """A :class:`SentenceAttention` as JSON-ready lists, weights rounded to 5 decimals."""
    return {
        "source": a.source,
        "translation": a.translation,
        "source_tokens": a.source_tokens,
        "target_input_tokens": a.target_input_tokens,
        "target_output_tokens": a.target_output_tokens,
        "encoder": rounded(a.encoder),  # per layer (H, S, S)
        "decoder_self": rounded(a.decoder_self),  # per layer (H, T, T)
        "decoder_cross": rounded(a.decoder_cross),  # per layer (H, T, S)
    }
