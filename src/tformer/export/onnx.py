"""A trained translation model as three ONNX graphs, and a greedy decoder that runs them with ONNX Runtime.

    src ids ──encoder.onnx──► memory ──decoder_init.onnx──► cross-attention keys/values of every layer ─┐
                                                                                      (once per batch)   ▼
    token, src ids, past self-attention keys/values ──decoder_step.onnx──► logits, present keys/values
                                      ▲                                                   │ (every step)
                                      └─────────────── fed back at the next step ─────────┘

* ``encoder.onnx``: ``src`` (B, S) int64 -> ``memory`` (B, S, D) float32, :meth:`Transformer.encode`.
* ``decoder_init.onnx``: ``memory`` -> ``cross_key_i``, ``cross_value_i`` (B, H, S, Dh) for each decoder layer i,
  what :meth:`Transformer.start_decoding` computes (each layer's ``cross_attn.project_kv``).
* ``decoder_step.onnx``: ``tokens`` (B, 1) int64, ``src`` (B, S) int64 (read for its padding only), ``past_key_i``,
  ``past_value_i`` (B, H, t, Dh) and the cross keys/values -> ``logits`` (B, V) float32 for the next token and
  ``present_key_i``, ``present_value_i`` (B, H, t + 1, Dh): one :meth:`Transformer.decode_step`.

The step index is not a separate input: it is the past's time axis t (the position of the new token), so the
two can never disagree. At the first step t = 0 (empty past tensors, shape (B, H, 0, Dh)); B, S and t are
dynamic axes of every graph.

Why the cross-attention keys/values are a graph of their own: they depend on the source only, so computing
them inside the step graph from ``memory`` would redo 2 L (B, S, D) x (D, D) products at every step: 2 S D^2
multiply-adds per sentence and layer against about 14 D^2 for the rest of a step (W^Q, W^K, W^V, W^O of
self-attention, W^Q and W^O of cross-attention, the FFN with d_ff = 4 D), two to four times a step's work for
sources of 15 to 30 tokens. Computed once per batch, they enter the step graph as inputs, like the past.

The graphs trace the model's own code: small wrappers call ``encode``, ``project_kv`` and ``decode_step`` with a
:class:`~tformer.nn.cache.DecoderCache` whose self-attention caches are :class:`_GrowingKV`, the
:class:`~tformer.nn.cache.KVCache` contract written with ``torch.cat`` (whose output length is symbolic) in
place of a preallocated buffer indexed with Python integers. Nothing of the model's math is written again here.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` then onnxscript's translation), which needs
the ``onnxscript`` package. The TorchScript exporter (``dynamo=False``) cannot trace the step: it turns sizes into
tensors, and :meth:`~tformer.models.transformer.stacks.Decoder.step` passes ``tokens.shape[1] > 1`` to
``scaled_dot_product_attention(is_causal=...)``, which needs a bool. ``torch.export`` checks the dynamic axes
(ranges from :class:`torch.export.Dim`) instead of silently freezing a traced size. :class:`Runtime` needs only
``onnxruntime`` (and ``onnx``, imported by this module); :func:`export` says so in one line when onnxscript is missing.

Supported configurations: full attention (``attention.kind: full``) with any of the paper's options: post- or
pre-norm, LayerNorm or RMSNorm, sinusoidal or learned positions, tied or separate embeddings and output layer,
shared or separate vocabularies; also relative positions (T5) and the copy mechanism (``pointer_generator``, whose
step output is then log-probabilities, which greedy search treats as logits). The long-input attention kinds
(chunked, sliding, linformer, lsh) and the location-aware and monotonic encoder-decoder attentions (whose decoding
carries an alignment state) are refused with a one-line :class:`TformerError`.

:class:`Runtime` decodes as :func:`tformer.generation.greedy.greedy_search` does, in numpy: the same length limit
(each source's length + 50, at most ``max_len``), the same forbidden tokens, finished sentences dropped from the
batch; it tokenizes and batches with :class:`~tformer.translator.Translator`'s own helpers.

Shape legend: B sentences, S source length, D d_model, H heads, Dh head width, t past length, V target vocabulary,
L decoder layers.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from tformer.console import log
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.generation.beam import forbid_special
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer
from tformer.nn.cache import DecoderCache, StaticKV
from tformer.nn.masks import padding_mask
from tformer.translator import Translator

OPSET = 18
ENCODER, DECODER_INIT, DECODER_STEP = "encoder.onnx", "decoder_init.onnx", "decoder_step.onnx"
META_NAME = "export.json"
_SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights: a protobuf file holds at most 2 GiB; above, weights go beside


def _layer_names(prefix: str, n: int) -> list[str]:
    """``prefix_key_0, prefix_value_0, prefix_key_1, ...``: the order of every flat list of per-layer k/v."""
    return [f"{prefix}_{kind}_{i}" for i in range(n) for kind in ("key", "value")]


# ---- the graphs: thin wrappers around the model's own methods --------------------------------------------------
class _Encoder(nn.Module):
    """src (B, S) -> memory (B, S, D)."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> Tensor:
        return self.model.encode(src)  # (B, S, D)


class _DecoderInit(nn.Module):
    """memory (B, S, D) -> each decoder layer's cross-attention key and value, (B, H, S, Dh) each, flat."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, memory: Tensor) -> tuple[Tensor, ...]:
        kvs = [layer.cross_attn.project_kv(memory) for layer in self.model.decoder.layers]
        return tuple(t for kv in kvs for t in (kv.k, kv.v))


class _GrowingKV:
    """One layer's self-attention cache for a traced step: the past in, past + new out.

    The :class:`~tformer.nn.cache.KVCache` contract (``length``, ``append``) with ``torch.cat``, so that the
    past length stays a symbolic size of the graph.
    """

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v  # (B, H, t, Dh)

    @property
    def length(self) -> int:
        return self.k.shape[2]  # symbolic while exporting: the graph's past_len axis

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k = torch.cat([self.k, k], dim=2)  # (B, H, t + 1, Dh)
        self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v


class _DecoderStep(nn.Module):
    """tokens (B, 1), src (B, S), past and cross k/v per layer -> logits (B, V) and present k/v per layer."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, src: Tensor, past: list[Tensor], cross: list[Tensor]) -> tuple[Tensor, ...]:
        cfg = self.model.cfg
        n = len(self.model.decoder.layers)
        cache = DecoderCache(
            self_kv=[_GrowingKV(past[2 * i], past[2 * i + 1]) for i in range(n)],
            cross_kv=[StaticKV(cross[2 * i], cross[2 * i + 1]) for i in range(n)],
            memory_mask=padding_mask(src, cfg.pad_id),  # (B, 1, 1, S)
            src=src if cfg.pointer_generator else None,
        )
        logits = self.model.decode_step(tokens, cache)[:, -1].float()  # (B, 1, V) -> (B, V)
        return (logits, *(t for kv in cache.self_kv for t in (kv.k, kv.v)))


# ---- export ---------------------------------------------------------------------------------------------------
def check_supported(cfg: TransformerConfig) -> None:
    """Raise a one-line :class:`TformerError` for a configuration these graphs do not cover."""
    if cfg.attention.kind != "full":
        raise TformerError(f"ONNX export supports full attention only; this model uses {cfg.attention.kind!r} "
                           "attention")
    if cfg.cross_attention.kind != "dot":
        raise TformerError(f"ONNX export supports dot-product encoder-decoder attention only; this model uses "
                           f"{cfg.cross_attention.kind!r} (its decoding state is not in the graphs)")


def graph_io(path: Path) -> dict:
    """The inputs and outputs of an ONNX file as written: name, element type and shape (symbolic axes by name)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> list[dict]:
        return [{"name": v.name,
                 "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]} for v in values]

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def export_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                 dynamic_shapes: tuple, external_data: bool = False, *, dynamo: bool = True) -> None:
    """One ``torch.onnx.export`` with the exporter's progress lines and warnings kept out of the CLI's output
    (its verdict is the parity check, not its log).

    ``dynamic_shapes`` holds one ``{axis: torch.export.Dim}`` per input. ``dynamo=False`` takes the TorchScript
    tracer instead (for a model whose torch.export graph ONNX cannot translate); the same axes are then dynamic,
    named after their Dims.
    """
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    if dynamo:
        axes: dict = {"dynamic_shapes": dynamic_shapes, "external_data": external_data}
    else:
        axes = {"dynamic_axes": {name: {axis: dim.__name__ for axis, dim in shape.items()}
                                 for name, shape in zip(input_names, dynamic_shapes, strict=True)}}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), args, str(path), input_names=input_names, output_names=output_names,
                              opset_version=OPSET, dynamo=dynamo, verbose=False, **axes)
    finally:
        quiet.setLevel(level)
    onnx.checker.check_model(str(path))


def export(translator: Translator, out_dir: Path) -> dict:
    """Write the three graphs, the tokenizer files and ``export.json`` into ``out_dir`` (which exists).

    Returns:
        ``{"files": {name: size in MB}, "opset": OPSET}`` for the CLI's JSON.

    Raises:
        TformerError: an unsupported configuration (see the module docstring), in one line.
    """
    cfg = translator.model.cfg
    check_supported(cfg)
    if importlib.util.find_spec("onnxscript") is None:  # only exporting needs it, not Runtime
        raise TformerError("ONNX export needs the package 'onnxscript' (torch.onnx's exporter): "
                           "pip install 'tformer[export]'")
    out_dir = Path(out_dir)
    model = copy.deepcopy(translator.model).to("cpu", torch.float32).eval()  # the caller's model stays as it is
    n, heads, d_head = cfg.num_decoder_layers, cfg.num_heads, cfg.d_head
    external = model.num_parameters() * 4 > _SINGLE_FILE_LIMIT

    # Example inputs: every dynamic size distinct and >= 2, so that torch.export neither merges two axes nor
    # specialises one to 0 or 1; the graphs accept any size in the Dim ranges (an empty past included).
    b, s, t = 2, 5, 3
    batch = torch.export.Dim("batch", min=1)
    src_len = torch.export.Dim("src_len", min=1, max=cfg.max_len)
    past_len = torch.export.Dim("past_len", min=0, max=cfg.max_len - 1)  # the new token sits at position past_len
    src = torch.full((b, s), cfg.unk_id, dtype=torch.long)
    src[0, -1] = cfg.pad_id  # (B, S)
    with torch.no_grad():
        memory = model.encode(src)  # (B, S, D)
    cross = [torch.zeros(b, heads, s, d_head) for _ in range(2 * n)]  # (B, H, S, Dh) per layer, key and value
    past = [torch.zeros(b, heads, t, d_head) for _ in range(2 * n)]  # (B, H, t, Dh)
    tokens = torch.full((b, 1), cfg.bos_id, dtype=torch.long)  # (B, 1)

    cross_names, past_names, present_names = _layer_names("cross", n), _layer_names("past", n), _layer_names(
        "present", n)
    export_graph(_Encoder(model), (src,), out_dir / ENCODER, ["src"], ["memory"],
                  ({0: batch, 1: src_len},), external)
    export_graph(_DecoderInit(model), (memory,), out_dir / DECODER_INIT, ["memory"], cross_names,
                  ({0: batch, 1: src_len},), external)
    export_graph(_DecoderStep(model), (tokens, src, past, cross), out_dir / DECODER_STEP,
                  ["tokens", "src", *past_names, *cross_names], ["logits", *present_names],
                  ({0: batch}, {0: batch, 1: src_len}, [{0: batch, 2: past_len}] * (2 * n),
                   [{0: batch, 2: src_len}] * (2 * n)), external)

    translator.vocabs.save(out_dir)
    graphs = {name: graph_io(out_dir / name) for name in (ENCODER, DECODER_INIT, DECODER_STEP)}
    meta = {
        "format": "onnx",
        "opset": OPSET,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnx {onnx.__version__}",
        "graphs": graphs,
        "decoding": "encoder once; decoder_init once per batch; decoder_step once per token, starting from "
                    "tokens = bos_id and empty past (t = 0), feeding present_* back as past_*",
        "config": cfg.to_dict(),
    }
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    files = {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(out_dir.iterdir()) if p.is_file()}
    return {"files": files, "opset": OPSET}


# ---- the runtime ----------------------------------------------------------------------------------------------
class _TextSide:
    """What :class:`Translator`'s tokenization and batching helpers and :class:`Transformer`'s length limit read
    from their objects (the config, the vocabularies, the device), so that :class:`Runtime` calls those helpers
    themselves rather than copies of them."""

    encode = Translator._encode  # texts -> source ids + EOS per sentence (None for an empty one)
    batches = Translator._batches  # -> (sentence indices, padded source (B, S)), shortest first, under max_tokens
    length_limits = Transformer._length_limits  # (B, S) -> (B,) source length + 50, at most max_len

    def __init__(self, cfg: TransformerConfig, vocabs: Vocabularies) -> None:
        self.cfg = cfg
        self.model = SimpleNamespace(cfg=cfg)
        self.vocabs = vocabs
        self.device = torch.device("cpu")


class Runtime:
    """Greedy translation with the graphs written by :func:`export`, on ONNX Runtime's CPU provider."""

    def __init__(self, out_dir: str | os.PathLike, threads: int = 0) -> None:
        """Load ``out_dir``; ``threads`` = ONNX Runtime's intra-op threads (0 = its default, one per core)."""
        d = Path(out_dir)
        if not (d / META_NAME).is_file():
            raise TformerError(f"no ONNX export in {d} (expected {d / META_NAME})")
        meta = json.loads((d / META_NAME).read_text(encoding="utf-8"))
        self.cfg = TransformerConfig.from_dict(meta["config"])
        self.text = _TextSide(self.cfg, Vocabularies.load(d))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(d / name), options, providers=["CPUExecutionProvider"])

        self.encoder, self.decoder_init, self.decoder_step = session(ENCODER), session(DECODER_INIT), session(
            DECODER_STEP)
        n = self.cfg.num_decoder_layers
        self._cross, self._past = _layer_names("cross", n), _layer_names("past", n)  # the step's input names

    def translate(self, texts: Sequence[str], beam_size: int = 1, max_tokens: int = 4096, *, warn=None) -> list[str]:
        """Translate ``texts`` greedily, batched as :meth:`Translator.translate` batches; empty lines give ""."""
        if beam_size != 1:
            raise TformerError(f"the ONNX runtime here decodes greedily: beam_size must be 1, got {beam_size}")
        ids = self.text.encode(texts, warn or log)
        out = [""] * len(ids)
        for chunk, src in self.text.batches(ids, max_tokens):
            hyps = self.generate(src.numpy())
            for row, i in enumerate(chunk):
                out[i] = self.text.vocabs.tgt.decode(hyps[row].tolist())
        return out

    def start(self, src: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(B, S) int64 source ids -> memory (B, S, D) and the cross-attention keys/values, 2 L x (B, H, S, Dh)."""
        (memory,) = self.encoder.run(None, {"src": src})
        return memory, self.decoder_init.run(None, {"memory": memory})

    def step(self, tokens: np.ndarray, src: np.ndarray, past: list[np.ndarray],
             cross: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One decoder step: tokens (B, 1) at position t, src (B, S), past 2 L x (B, H, t, Dh) and cross
        2 L x (B, H, S, Dh) (key, value per layer) -> logits (B, V) and present 2 L x (B, H, t + 1, Dh)."""
        feed = {"tokens": tokens, "src": src, **dict(zip(self._past, past, strict=True)),
                **dict(zip(self._cross, cross, strict=True))}
        logits, *present = self.decoder_step.run(None, feed)
        return logits, present

    def generate(self, src: np.ndarray) -> np.ndarray:
        """(B, S) int64 source ids -> (B, L) output ids without BOS, ending in EOS when produced, pad-filled:
        :func:`tformer.generation.greedy.decode_single_path` with argmax, step for step."""
        cfg = self.cfg
        b = src.shape[0]
        limit = self.text.length_limits(torch.from_numpy(src), None, 0).numpy()  # (B,)
        _, cross = self.start(src)  # 2 L x (B, H, S, Dh)
        empty = np.zeros((b, cfg.num_heads, 0, cfg.d_head), dtype=np.float32)  # (B, H, 0, Dh)
        past = [empty] * len(self._past)
        tokens = np.full((b, 1), cfg.bos_id, dtype=np.int64)  # (B', 1)
        out = np.full((b, int(limit.max())), cfg.pad_id, dtype=np.int64)  # (B, max L)
        rows = np.arange(b)  # original sentence of each row still decoding, (B',)
        length = 0
        for t in range(int(limit.max())):
            logits, past = self.step(tokens, src, past, cross)  # (B', V), 2 L x (B', H, t + 1, Dh)
            forbid_special(logits, cfg, t, 0)
            next_tok = logits.argmax(axis=-1)  # (B',)
            out[rows, t] = next_tok
            length = t + 1
            done = (next_tok == cfg.eos_id) | (limit[rows] <= t + 1)  # ended, or at its own length limit
            if done.any():
                keep = np.flatnonzero(~done)  # (B'',)
                if keep.size == 0:
                    break
                past, cross = [p[keep] for p in past], [c[keep] for c in cross]
                src, rows, next_tok = src[keep], rows[keep], next_tok[keep]
            tokens = next_tok[:, None]  # (B', 1)
        return out[:, :length]
