"""Request and response models of the HTTP API (pydantic; they are also the OpenAPI schema).

Request models reject unknown fields and wrong JSON types (strict: ``"4"`` is not a beam size) and carry
the server's :class:`~tformer.serving.limits.Limits` as field constraints, so they are built per app by
:func:`request_models`.
"""

from typing import Annotated, Any

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


def mask_predict_request(limits: Limits) -> type[BaseModel]:
    """The request model of ``POST /translate`` for a non-autoregressive CMLM (mask-predict's settings)."""
    Text = Annotated[str, StringConstraints(max_length=limits.max_chars)]

    class MaskPredictRequest(BaseModel):
        """Sentences to translate with mask-predict (Ghazvininejad et al., 2019)."""

        model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"texts": ["three hundred twenty-one"],
                                                                              "iterations": 10}]})
        texts: list[Text] = Field(min_length=1, max_length=limits.max_texts,
                                  description="the sentences; an empty one translates to an empty string")
        iterations: int = Field(10, ge=1, le=100, description="decoder passes T")
        length_candidates: int = Field(3, ge=1, le=limits.max_beam, description="most likely lengths decoded")

    MaskPredictRequest.__name__ = "TranslateRequest"
    return MaskPredictRequest


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
    task: str = Field(description="the run's task (translation, cmlm, classify, vision, qa, summarization, lm, ...)")
    endpoint: str = Field(description="the route that answers: translate, predict or generate")
    input_kind: str = Field(description="what an input is: text, question ({question, context}), image (digits' "
                                        "pixels), rgb_image (pixels [r, g, b]), frames or audio")
    example: Any = Field(None, description="an input the page opens with (from the run's validation data)")
    model: dict = Field(description="the model's config")
    parameters: int
    device: str
    tokenizer: dict | None = Field(None, description="the tokenizers (translation runs)")
    labels: list[str] | None = Field(None, description="the classes (classifier runs)")
    features: list[str] = Field(default_factory=list, description="what the model decodes with (translation runs)")
    limits: dict


class ErrorResponse(BaseModel):
    """A refused request: one line that says what was wrong."""

    detail: str


# The 4xx answers every POST route may give, each a one-line ErrorResponse (documented in the OpenAPI schema).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed JSON"},
    413: {"model": ErrorResponse, "description": "the request body is over the server's limit"},
    422: {"model": ErrorResponse, "description": "a wrong field, type or value, or input the model cannot take"},
}


# -- runs of the other tasks: POST /predict and POST /generate --------------------------------------------------

MAX_IMAGE_SIDE = 64  # the largest image (pixels a side) /predict takes
MAX_RGB_SIDE = 512  # the largest RGB image (pixels a side) /predict takes; the run's processor resizes it
MAX_FRAMES, MAX_FEATURES = 2000, 128  # the longest utterance (feature frames) and the most features a frame
MAX_SAMPLES = 30 * 16_000  # the longest waveform: 30 s at 16 kHz (20 s at 24 kHz)


def input_types(limits: Limits) -> dict[str, Any]:
    """The JSON type of one input of ``POST /predict``, by the predictor's ``input_kind``."""
    Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars)]

    class Question(BaseModel):
        """A question about a context (extractive QA: the answer is a span of the context)."""

        model_config = _STRICT
        question: Text
        context: str = Field(min_length=1, max_length=limits.max_context_chars,
                             description="the passage the answer is taken from; longer than the model's window, "
                                         "it is read in overlapping strides")

    Row = Annotated[list[Annotated[float, Field(ge=0.0, le=16.0, allow_inf_nan=False)]],
                    Field(min_length=1, max_length=MAX_IMAGE_SIDE)]

    class Image(BaseModel):
        """A grey image, row by row, in the digits' scale: 0 = background to 16 = full ink; 8 x 8, or sides that
        are whole multiples of 8 (shrunk by block means, as the digits were made)."""

        model_config = _STRICT
        pixels: list[Row] = Field(min_length=1, max_length=MAX_IMAGE_SIDE)

    Pixel = Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]

    class RGBImage(BaseModel):
        """An RGB image, row by row, each pixel [r, g, b] in 0..255, of any size: the run's image processor resizes
        and normalizes it as the model was trained (an imported ViT)."""

        model_config = _STRICT
        pixels: list[Annotated[list[Pixel], Field(min_length=1, max_length=MAX_RGB_SIDE)]] = Field(
            min_length=1, max_length=MAX_RGB_SIDE)

    Frame = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1, max_length=MAX_FEATURES)]

    class Frames(BaseModel):
        """An utterance as feature frames (T, F), the features the run was trained on (e.g. 13 MFCCs a frame)."""

        model_config = _STRICT
        frames: list[Frame] = Field(min_length=1, max_length=MAX_FRAMES)

    class Audio(BaseModel):
        """A mono waveform: samples in [-1, 1] at ``sample_rate`` Hz (the page decodes an audio file to this)."""

        model_config = _STRICT
        samples: list[Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]] = Field(
            min_length=1, max_length=MAX_SAMPLES)
        sample_rate: int = Field(ge=1000, le=192_000, description="samples a second")

    return {"text": Text, "question": Question, "image": Image, "rgb_image": RGBImage, "frames": Frames,
            "audio": Audio}


def predict_request(limits: Limits, input_kind: str, decodes: bool, model_max_len: int) -> type[BaseModel]:
    """The request model of ``POST /predict`` for inputs of ``input_kind``; with ``decodes`` (a summarizer), the
    decoding settings too."""
    Input = input_types(limits)[input_kind]

    class PredictRequest(BaseModel):
        """Inputs to answer, each on its own; concurrent requests with equal settings share one model call."""

        model_config = _STRICT
        inputs: list[Input] = Field(min_length=1, max_length=limits.max_texts)

    if not decodes:
        return PredictRequest

    class DecodingPredictRequest(PredictRequest):
        beam_size: int = Field(4, ge=1, le=limits.max_beam, description="beam size; 1 = greedy search")
        alpha: float = Field(0.6, ge=0.0, le=10.0, description="length penalty alpha, ((5+|Y|)/6)^alpha")
        min_len: int = Field(0, ge=0, le=model_max_len, description="EOS is forbidden before this many tokens")
        max_len: int | None = Field(None, ge=1, le=model_max_len, description="most output tokens")
        no_repeat_ngram_size: int = Field(0, ge=0, le=16, description="n > 0: no n-gram is produced twice")

    DecodingPredictRequest.__name__ = "PredictRequest"
    return DecodingPredictRequest


def generate_request(limits: Limits, model_max_len: int) -> type[BaseModel]:
    """The request model of ``POST /generate``: prompts and the decoding settings of a language model."""
    Prompt = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars)]

    class GenerateRequest(BaseModel):
        """Prompts to continue: greedy search by default, beam search with beam_size > 1, or sampling."""

        model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"prompts": ["a dog"],
                                                                              "max_new_tokens": 16}]})
        prompts: list[Prompt] = Field(min_length=1, max_length=limits.max_texts,
                                      description="the texts to continue")
        max_new_tokens: int = Field(32, ge=1, le=model_max_len, description="most new tokens, EOS included")
        min_new_tokens: int = Field(0, ge=0, le=model_max_len, description="EOS is forbidden before this many")
        beam_size: int = Field(1, ge=1, le=limits.max_beam, description="1 = greedy search (or sampling)")
        alpha: float = Field(0.0, ge=0.0, le=10.0, description="length penalty alpha of beam search")
        no_repeat_ngram_size: int = Field(0, ge=0, le=16, description="n > 0: no n-gram is produced twice")
        sample: bool = Field(False, description="draw each token instead of searching")
        temperature: float | None = Field(None, gt=0.0, le=100.0, description="sampling only (default 1)")
        top_k: int | None = Field(None, ge=0, le=1_000_000, description="sampling only: keep the k likeliest")
        top_p: float | None = Field(None, gt=0.0, le=1.0, description="sampling only: nucleus of mass p")
        seed: int | None = Field(None, ge=0, le=2**63 - 1, description="sampling only: for repeatable draws")

        @model_validator(mode="after")
        def _consistent(self) -> "GenerateRequest":
            if self.min_new_tokens > self.max_new_tokens:
                raise ValueError(f"min_new_tokens ({self.min_new_tokens}) must not exceed max_new_tokens "
                                 f"({self.max_new_tokens})")
            return self

    return GenerateRequest


def cls_attention_request(limits: Limits) -> type[BaseModel]:
    """The request model of a text classifier's ``POST /attention``."""

    class ClsAttentionRequest(BaseModel):
        """One text whose [CLS] token's attention is wanted."""

        model_config = _STRICT
        text: str = Field(min_length=1, max_length=limits.max_chars, description="the text to classify")

    return ClsAttentionRequest


class Answers(BaseModel):
    """One answer per input, in the order of the request (the fields depend on the task: ``label`` and
    ``probabilities``; ``answer``, ``start``, ``end``, ``score``; ``summary``; ``prompt`` and ``continuation``)."""

    outputs: list[dict[str, Any]]
