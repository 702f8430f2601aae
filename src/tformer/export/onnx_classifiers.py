"""Classifier runs as one ONNX graph (``model.onnx``: inputs in, logits out), run by ONNX Runtime, and the parity
check of the exported graph against the PyTorch model on real inputs.

* the encoder-only text classifier (``task: classify``, :class:`EncoderOnlyForClassification`): ``input_ids``
  (B, S) int64 and ``attention_mask`` (B, S) int64 (1 = a real token, 0 = padding) -> ``logits`` (B, K) float32;
  B and S are dynamic (S up to the model's ``max_len``). The folder also gets the run's ``tokenizer.json`` and
  ``labels.json``: tokenize with the special tokens, as :func:`tformer.tasks.classify.encode_texts` does.
* the Vision Transformer and the Swin Transformer (``task: vision``): ``pixel_values`` (B, 1, S', S') float32 in
  [0, 1] -> ``logits`` (B, 10); B is dynamic, S' is the model's ``image_size``: each of the 8x8 digits' pixels
  (0..16) divided by 16 and repeated S' / 8 times along each axis.

Each architecture is one :class:`ClassifierGraph` in :data:`GRAPHS`: its input names, the module traced, example
inputs and dynamic axes, and the exporter:

* ViT: ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript) on the model itself.
* The text classifier: torch.export cannot trace :meth:`EncoderOnly.forward` as it is, because it branches on
  the values of its inputs (``key_mask`` returns None when nothing is padded, the embeddings check the ids'
  range): guards on data-dependent values. :class:`_TextClassifier` calls the model's own parts (the embedding
  sum, the key mask of :func:`~tformer.models.bert.model.key_mask` without its shortcut, every layer, the head)
  without those checks; the same math, so the parity check holds it to the model's forward.
* Swin: torch.export traces it, but the ONNX translation fails (``Cannot view a tensor with shape (4 s, 4, 2, 16)
  ... as (4 s, 4, 32)``: a view of the window partition with a symbolic batch). The TorchScript tracer
  (``dynamo=False``) exports it: every size in Swin follows from the fixed ``image_size``, so the Python booleans
  the trace freezes (window and padding checks) do not depend on the batch, which stays dynamic.

:func:`parity` runs both on the same batches: the largest absolute difference of the logits and how many
argmaxes agree. (The TorchScript tracer on the text classifier gives logits off by up to 0.1: its translation of
``scaled_dot_product_attention`` with a boolean mask differs; the dynamo path agrees to 1e-6.)

Shape legend: B examples, S tokens, S' the image side in pixels, K classes.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from tformer.errors import TformerError
from tformer.export.onnx import META_NAME, OPSET, export_graph, graph_io

MODEL_FILE = "model.onnx"


class _TextClassifier(nn.Module):
    """input_ids (B, S), attention_mask (B, S) 1/0 -> logits (B, K): :meth:`EncoderOnlyForClassification.forward`
    through the model's own parts, without the branches on input values that torch.export cannot trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        encoder = self.model.encoder
        emb = encoder.embeddings
        x = emb.tokens(input_ids) + emb.positions(input_ids.shape[1])  # (B, S, D) + (S, D)
        if emb.token_types is not None:
            x = x + emb.token_types.weight[0]  # every position is of type 0
        x = emb.dropout(emb.norm(x))  # (B, S, D)
        keep = attention_mask.bool()  # (B, S)
        mask = (keep | ~keep.any(dim=-1, keepdim=True))[:, None, None, :]  # (B, S) -> (B, 1, 1, S), as key_mask
        for layer in encoder.layers:
            x, _ = layer(x, mask)
        return self.model.head(encoder.final_norm(x), attention_mask)  # (B, K)


def _text_example(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Two rows of 5 tokens, the first with 2 pads (distinct sizes >= 2, so that torch.export keeps both axes)."""
    ids = torch.full((2, 5), 1 if model.cfg.pad_id != 1 else 2, dtype=torch.long)  # (B, S)
    mask = torch.ones(2, 5, dtype=torch.long)  # (B, S)
    ids[0, -2:], mask[0, -2:] = model.cfg.pad_id, 0
    return ids, mask


def _text_axes(model: nn.Module) -> tuple[dict, dict]:
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=model.cfg.max_len)
    return {0: batch, 1: length}, {0: batch, 1: length}


def _image_example(model: nn.Module) -> tuple[Tensor]:
    c = model.cfg
    return (torch.rand(3, c.num_channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0)),)


def _image_axes(model: nn.Module) -> tuple[dict]:
    return ({0: torch.export.Dim("batch", min=1)},)


@dataclass(frozen=True)
class ClassifierGraph:
    """How one architecture becomes ``model.onnx`` (see the module docstring)."""

    input_names: tuple[str, ...]
    module: Callable[[nn.Module], nn.Module]  # the model -> the module traced
    example: Callable[[nn.Module], tuple[Tensor, ...]]  # inputs to trace with
    axes: Callable[[nn.Module], tuple[dict, ...]]  # {axis: Dim} per input
    dynamo: bool = True  # torch.export; False: the TorchScript tracer
    exporter_note: str = ""


GRAPHS: dict[str, ClassifierGraph] = {
    "EncoderOnlyForClassification": ClassifierGraph(
        ("input_ids", "attention_mask"), _TextClassifier, _text_example, _text_axes,
        exporter_note="the encoder's parts without its value checks (torch.export cannot trace them)"),
    "VisionClassifier": ClassifierGraph(("pixel_values",), lambda m: m, _image_example, _image_axes),
    "SwinClassifier": ClassifierGraph(
        ("pixel_values",), lambda m: m, _image_example, _image_axes, dynamo=False,
        exporter_note="TorchScript tracer: ONNX cannot translate torch.export's window partition"),
}
"""Architecture (config.json's ``"architecture"``) -> how it is exported."""


def graph_of(model: nn.Module) -> ClassifierGraph:
    """The :class:`ClassifierGraph` of ``model``'s class (one-line TformerError for another model)."""
    name = type(model).__name__
    if name not in GRAPHS:
        raise TformerError(f"ONNX export of classifiers covers {', '.join(GRAPHS)}; this model is a {name}")
    cfg = model.cfg
    kind = getattr(getattr(cfg, "attention", None), "kind", "full")
    if kind != "full":
        raise TformerError(f"ONNX export supports full attention only; this model uses {kind!r} attention")
    return GRAPHS[name]


def export_classifier(model: nn.Module, out_dir: str | os.PathLike, meta: dict[str, Any],
                      files: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Write ``model.onnx``, copies of ``files`` (the run's tokenizer and labels) and ``export.json`` (the graph's
    inputs and outputs, the model's config and ``meta``) into ``out_dir``, which exists.

    Returns:
        ``{"files": {name: size in MB}, "opset": OPSET, "exporter": ...}`` for the CLI's JSON.
    """
    graph = graph_of(model)
    out = Path(out_dir)
    model = copy.deepcopy(model).to("cpu", torch.float32).eval()  # the caller's model stays as it is
    args = graph.example(model)
    export_graph(graph.module(model), args, out / MODEL_FILE, list(graph.input_names), ["logits"],
                 graph.axes(model), dynamo=graph.dynamo)
    for f in files:
        shutil.copyfile(f, out / Path(f).name)
    exporter = "torch.onnx.export(dynamo=True)" if graph.dynamo else "torch.onnx.export(dynamo=False), TorchScript"
    exporter += f", torch {torch.__version__}, onnx {onnx.__version__}"
    doc = {"format": "onnx", "opset": OPSET, "exporter": exporter, "architecture": type(model).__name__,
           "graphs": {MODEL_FILE: graph_io(out / MODEL_FILE)}, "config": model.cfg.to_dict(), **meta}
    (out / META_NAME).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    sizes = {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(out.iterdir()) if p.is_file()}
    info = {"files": sizes, "opset": OPSET, "exporter": exporter.split(",")[0]}
    if graph.exporter_note:
        info["exporter_note"] = graph.exporter_note
    return info


_NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(bool)": np.bool_}


class ClassifierRuntime:
    """``model.onnx`` of an exported classifier on ONNX Runtime's CPU provider: inputs in, logits (B, K) out."""

    def __init__(self, out_dir: str | os.PathLike, threads: int = 0) -> None:
        d = Path(out_dir)
        if not (d / MODEL_FILE).is_file():
            raise TformerError(f"no exported classifier in {d} (expected {d / MODEL_FILE})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(d / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.inputs = [(i.name, _NUMPY_TYPES[i.type]) for i in self.session.get_inputs()]

    def logits(self, *arrays: np.ndarray | Tensor) -> np.ndarray:
        """The graph's logits for inputs in its order (tensors or arrays, cast to the graph's types)."""
        if len(arrays) != len(self.inputs):
            raise TformerError(f"the graph takes {len(self.inputs)} inputs ({', '.join(n for n, _ in self.inputs)}), "
                               f"got {len(arrays)}")
        feed = {name: np.asarray(a.detach().cpu().numpy() if isinstance(a, Tensor) else a, dtype=dtype)
                for (name, dtype), a in zip(self.inputs, arrays, strict=True)}
        return self.session.run(None, feed)[0]


@torch.no_grad()
def parity(model: nn.Module, runtime: ClassifierRuntime, batches: Iterable[tuple[Tensor, ...]]) -> dict[str, Any]:
    """The PyTorch model and the exported graph on the same batches of model inputs: the largest absolute
    difference of their logits, how many examples get the same argmax, and both times."""
    model = model.eval()
    n = same = 0
    worst = 0.0
    torch_s = onnx_s = 0.0
    for inputs in batches:
        t0 = time.perf_counter()
        ref = model(*inputs).float().cpu().numpy()  # (B, K)
        t1 = time.perf_counter()
        got = runtime.logits(*inputs)  # (B, K)
        t2 = time.perf_counter()
        torch_s, onnx_s = torch_s + t1 - t0, onnx_s + t2 - t1
        worst = max(worst, float(np.abs(ref - got).max()))
        same += int((ref.argmax(-1) == got.argmax(-1)).sum())
        n += len(ref)
    if not n:
        raise TformerError("the parity check has no inputs")
    return {"check_inputs": n, "max_abs_logit_diff": worst, "identical_argmax": same,
            "argmax_agreement": round(same / n, 4), "torch_seconds": round(torch_s, 3),
            "onnx_seconds": round(onnx_s, 3)}
