"""A trained ``task: classify`` run (:mod:`tformer.tasks.classify`): texts in, labels and probabilities out, and
the attention of the [CLS] token in every layer (for the served page).

    >>> p = open_run("runs/langid")
    >>> p.predict(["three hundred twelve"])
    [{'label': 'en', 'probabilities': {'en': 0.98, 'de': 0.02}}]

A text is read as in training (:func:`~tformer.tasks.classify.encode_texts`: the run's ``tokenizer.json`` with its
special tokens, cut to the run's ``data.max_len``); texts are batched by length under a budget of padded tokens
and padded with the attention mask, so that a text's answer does not depend on the others in its batch.

Shape legend: B texts, S tokens (padded), L layers, H heads, K labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.errors import TformerError
from tformer.io.files import read_json
from tformer.models.bert import EncoderOnlyForClassification
from tformer.tasks.classifier_runs import answers, check_device, input_error, run_config, run_model, token_batches
from tformer.tasks.classify import ClassificationTask, encode_texts, read_examples
from tformer.tasks.predictor import Predictor, register_predictor

TOKENIZER_FILE, LABELS_FILE = "tokenizer.json", "labels.json"


@register_predictor
class ClassifyPredictor(Predictor):
    """The encoder-only classifier of a ``classify`` run, its tokenizer and labels."""

    task = ClassificationTask.name
    input_kind = "text"

    def __init__(self, model: EncoderOnlyForClassification, tokenizer, labels: list[str], pad_id: int,
                 max_len: int, run_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> None:
        self.model, self.tokenizer, self.labels, self.pad_id = model.eval(), tokenizer, labels, pad_id
        self.max_len = min(max_len, model.cfg.max_len)
        self.run_dir, self.device = run_dir, torch.device(device)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> ClassifyPredictor:
        from tokenizers import Tokenizer

        d = check_device(device)
        model = run_model(run_dir, d, (EncoderOnlyForClassification,), "classify")
        run = Path(run_dir)
        for name in (TOKENIZER_FILE, LABELS_FILE):
            if not (run / name).is_file():
                raise TformerError(f"{run} has no {name}: it is not a complete classify run")
        doc = read_json(run / LABELS_FILE)
        labels, pad_id = doc.get("labels"), doc.get("pad_id")
        if not isinstance(labels, list) or len(labels) != model.head_cfg.num_classes or not isinstance(pad_id, int):
            raise TformerError(f"{run / LABELS_FILE} must hold {model.head_cfg.num_classes} labels and the pad id")
        try:
            tokenizer = Tokenizer.from_file(str(run / TOKENIZER_FILE))
        except Exception as e:  # the tokenizers library raises its own exception type
            raise TformerError(f"cannot read {run / TOKENIZER_FILE}: {str(e).splitlines()[0]}") from None
        cfg = run_config(run)
        max_len = cfg.data.max_len if cfg is not None else model.cfg.max_len
        return cls(model, tokenizer, [str(y) for y in labels], pad_id, max_len, run, d)

    # -- inputs --
    def encode(self, texts: Sequence[Any]) -> list[list[int]]:
        """The ids of each text (special tokens included), as in training; an empty text or one that is not a
        string is a one-line error naming it."""
        if isinstance(texts, str):
            raise TformerError("predict() takes a list of texts, not one string")
        for n, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise input_error(n, f"expected a text, got {type(text).__name__}")
            if not text.strip():
                raise input_error(n, "empty text")
        return encode_texts(self.tokenizer, list(texts), self.max_len)

    def padded(self, ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-padded ids (B, S) and the attention mask (B, S) (True = a real token), on the device."""
        s = max(len(x) for x in ids)
        batch = torch.full((len(ids), s), self.pad_id, dtype=torch.long)  # (B, S)
        mask = torch.zeros((len(ids), s), dtype=torch.bool)  # (B, S)
        for b, x in enumerate(ids):
            batch[b, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[b, : len(x)] = True
        return batch.to(self.device), mask.to(self.device)

    def model_inputs(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The model's inputs for ``texts`` as one batch: ids (B, S) and attention mask (B, S) (ONNX parity checks)."""
        return self.padded(self.encode(texts))

    # -- answers --
    @torch.no_grad()
    def predict(self, inputs: Sequence[str], max_tokens: int = 4096, **options: Any) -> list[dict[str, Any]]:
        """``{"label", "probabilities": {label: p}}`` per text, in order; batches hold at most ``max_tokens`` padded
        tokens (a longer text alone)."""
        if options:
            raise TformerError(f"classify predictions take no option {', '.join(sorted(options))}")
        ids = self.encode(inputs)
        out: list[dict[str, Any]] = [{}] * len(ids)
        for batch in token_batches([len(x) for x in ids], max_tokens):
            logits = self.model(*self.padded([ids[i] for i in batch]))  # (B, K)
            for i, answer in zip(batch, answers(self.labels, logits), strict=True):
                out[i] = answer
        return out

    @torch.no_grad()
    def cls_attention(self, text: str) -> dict[str, Any]:
        """How the [CLS] (first) token of ``text`` attends in every layer, for the served page.

        Returns:
            ``{"tokens": [...S], "label", "probabilities", "heads": [L][H][S], "mean": [L][S]}``: ``heads[l][h][j]``
            is the weight of head h of layer l from the first token to token j (each row sums to 1), ``mean`` the
            heads' average; weights from :meth:`EncoderOnly.forward` with ``need_weights`` (the reference path).
        """
        ids = self.encode([text])[0]
        x = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, S)
        logits, weights = self.model(x, need_weights=True)  # (1, K), L x (1, H, S, S)
        heads = torch.stack([w[0, :, 0, :] for w in weights]).float().cpu()  # (L, H, S): the first token's row
        tokens = [self.tokenizer.id_to_token(i) or "" for i in ids]
        return {"tokens": tokens, **answers(self.labels, logits)[0], "heads": heads.tolist(),
                "mean": heads.mean(dim=1).tolist()}

    # -- what the page and /info show --
    def validation_inputs(self) -> list[str]:
        """The run's validation texts (or its test texts when it has none); [] when its data cannot be read."""
        cfg = run_config(self.run_dir) if self.run_dir is not None else None
        if cfg is None:
            return []
        labels = tuple(ClassificationTask.settings_from(cfg).labels)
        for split in ("valid", "test"):
            try:
                texts = [t for t, _ in read_examples(cfg, split, labels)]
            except (TformerError, OSError):
                continue
            if texts:
                return texts
        return []

    def example(self) -> str | None:
        texts = self.validation_inputs()
        return texts[0] if texts else None

    def info(self) -> dict[str, Any]:
        return {"labels": self.labels, "architecture": type(self.model).__name__, "model": self.model.cfg.to_dict(),
                "classifier": self.model.head_cfg.to_dict(), "max_len": self.max_len}

    # -- what tformer export writes beside the graph --
    def export_files(self) -> list[Path]:
        """The run's files an exported model needs: its tokenizer and labels."""
        run = Path(self.run_dir) if self.run_dir is not None else None
        if run is None:
            raise TformerError("this predictor was not loaded from a run: its tokenizer cannot be exported")
        return [run / TOKENIZER_FILE, run / LABELS_FILE]

    def export_meta(self) -> dict[str, Any]:
        """What export.json says about the graph's inputs and outputs."""
        return {"labels": self.labels, "classifier": self.model.head_cfg.to_dict(), "max_len": self.max_len,
                "inputs": f"{TOKENIZER_FILE} with its special tokens, cut to max_len; input_ids padded with pad_id "
                          f"{self.pad_id}; attention_mask 1 = a token, 0 = padding",
                "outputs": "logits over the labels, in order; softmax gives the probabilities"}
