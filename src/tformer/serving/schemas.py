"""Request and response models of the HTTP API (pydantic; they are also the OpenAPI schema).

Request models reject unknown fields and wrong JSON types (strict: ``"4"`` is not a beam size) and carry
the server's :class:`~tformer.serving.limits.Limits` as field constraints, so they are built per app by
:func:`request_models`.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tformer.serving.limits import Limits

_STRICT = ConfigDict(extra="forbid", strict=True)


def request_models(limits: Limits, model_max_len: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request models of ``POST /translate`` and ``POST /attention`` under ``limits``.

    Args:
        limits: The server's limits (text count, text length, beam size).
        model_max_len: The model's position limit, the largest ``max_len`` a request may ask for.

    Returns:
        ``(TranslateRequest, AttentionRequest)``.
    """
    Text = Annotated[str, StringConstraints(max_length=limits.max_chars)]

    class TranslateRequest(BaseModel):
        """Sentences to translate with beam search (beam_size 1 = greedy)."""

        model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"texts": ["three hundred twenty-one"],
                                                                              "beam_size": 4}]})
        texts: list[Text] = Field(min_length=1, max_length=limits.max_texts,
                                  description="the sentences; an empty one translates to an empty string")
        beam_size: int = Field(4, ge=1, le=limits.max_beam, description="beam size; 1 = greedy search (§6.1: 4)")
        alpha: float = Field(0.6, ge=0.0, le=10.0, description="length penalty alpha, ((5+|Y|)/6)^alpha (§6.1)")
        max_len: int | None = Field(None, ge=1, le=model_max_len,
                                    description="most output tokens; default: the source length + 50")
        nbest: int = Field(0, ge=0, le=limits.max_beam, description="also return the N best translations (<= beam)")
        scores: bool = Field(False, description="also return each translation's score (log-probability / lp)")

        @model_validator(mode="after")
        def _nbest_within_beam(self) -> "TranslateRequest":
            if self.nbest > self.beam_size:
                raise ValueError(f"nbest ({self.nbest}) must not exceed beam_size ({self.beam_size})")
            return self

    class AttentionRequest(BaseModel):
        """One sentence whose attention weights are wanted."""

        model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"text": "three hundred twenty-one"}]})
        text: str = Field(min_length=1, max_length=limits.max_chars, description="the source sentence")
        target: str | None = Field(None, max_length=limits.max_chars,
                                   description="a translation to teacher-force; default: the model's own")
        beam_size: int = Field(4, ge=1, le=limits.max_beam, description="beam size of the model's translation")
        alpha: float = Field(0.6, ge=0.0, le=10.0, description="length penalty alpha")

    return TranslateRequest, AttentionRequest


class Hypothesis(BaseModel):
    """One entry of an n-best list."""

    text: str
    score: float = Field(description="log-probability / length penalty")


class TranslateResponse(BaseModel):
    """Translations in the order of the request's texts."""

    translations: list[str]
    scores: list[float] | None = Field(None, description="when scores was asked for")
    nbest: list[list[Hypothesis]] | None = Field(None, description="when nbest was asked for: best first")


class AttentionResponse(BaseModel):
    """Every attention weight of one sentence, rounded to 5 decimals; each row sums to 1.

    Decoder row t is the query at decoder input token t (BOS + translation), the position that predicts
    ``target_output_tokens[t]``.
    """

    source: str
    translation: str
    source_tokens: list[str] = Field(description="S tokens, ending in </s>")
    target_input_tokens: list[str] = Field(description="T tokens: <s> + translation")
    target_output_tokens: list[str] = Field(description="T tokens: translation + </s>")
    encoder: list[list[list[list[float]]]] = Field(description="per layer (H, S, S): encoder self-attention")
    decoder_self: list[list[list[list[float]]]] = Field(description="per layer (H, T, T): masked self-attention")
    decoder_cross: list[list[list[list[float]]]] = Field(description="per layer (H, T, S): encoder-decoder attention")


class BatchingStats(BaseModel):
    """How the batcher has gathered requests since the server started."""

    requests: int = Field(description="translate requests answered")
    texts: int = Field(description="sentences translated")
    model_calls: int = Field(description="translator calls made for them")
    batched_requests: int = Field(description="requests that shared a model call with another request")
    largest_call: int = Field(description="most requests in one model call")


class Health(BaseModel):
    """Liveness and the batching counters."""

    status: str
    uptime_s: float
    batching: BatchingStats


class Info(BaseModel):
    """What the server runs."""

    version: str
    name: str = Field(description="the run directory's name")
    model: dict = Field(description="the TransformerConfig")
    parameters: int
    device: str
    tokenizer: dict
    limits: dict
