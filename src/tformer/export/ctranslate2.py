"""A trained translation model in CTranslate2's format, and a runtime that translates with it.

CTranslate2 (OpenNMT) runs Transformer encoder-decoders in C++; a model is a folder with ``model.bin``,
``config.json`` and the vocabularies, built here through its Python spec API (``ctranslate2.specs``),
never through a converter: tformer's weights are copied tensor by tensor.

The mapping, tformer -> CTranslate2 ``TransformerSpec`` (scopes under ``encoder``/``decoder``):

    embed.tokens.weight (× sqrt(d_model) if scale_embedding) -> embeddings[_0].weight, scale_embeddings
    embed.positions (sinusoidal table or learned weight)      -> position_encodings.encodings (max_len, D),
                                                                 tformer's own rows, so the paper's
                                                                 interleaved sin/cos layout is kept exactly
    layers.i.self_attn.{q,k,v}_proj                            -> layer_i.self_attention.linear_0 (fused Q;K;V)
    layers.i.self_attn.out_proj                                -> layer_i.self_attention.linear_1
    layers.i.cross_attn.q_proj                                 -> layer_i.attention.linear_0
    layers.i.cross_attn.{k,v}_proj                             -> layer_i.attention.linear_1 (fused K;V)
    layers.i.cross_attn.out_proj                               -> layer_i.attention.linear_2
    layers.i.{self_attn,cross_attn,ffn}_residual.norm          -> layer_i.{self_attention,attention,ffn}.layer_norm
    layers.i.ffn.w_1, w_2                                      -> layer_i.ffn.linear_0, linear_1
    final_norm (pre-norm only)                                 -> layer_norm
    output_projection (+ bias)                                 -> decoder.projection

The norm placement is CTranslate2's ``pre_norm`` flag (post-norm: each sub-layer's norm follows its residual
sum, as in tformer's :class:`~tformer.nn.layers.Residual`); RMSNorm is its ``rms_norm``; the norm epsilon is
the config's ``layer_norm_epsilon``; a head width d_kv other than d_model / h is ``head_dim``; unscaled scores
(``scale_attention=False``) are ``queries_scale = 1``; T5's d_model^-0.5 before the output layer is
``scale_outputs``. Tied or shared matrices are written once (the spec aliases equal tensors).

Special tokens: the vocabularies are tformer's token strings in id order, so ids agree on both sides; the
config names ``unk_token``, ``eos_token`` and ``bos_token`` = ``decoder_start_token`` from the model's
unk_id, eos_id and bos_id (decoding starts from ``<s>``); no BOS or EOS is added to the source by
CTranslate2, the runtime appends EOS itself as :meth:`tformer.translator.Translator._encode` does.

Not exportable (a one-line :class:`TformerError`): relative position bias (T5), the copy mechanism,
approximate attention (sliding, Linformer, LSH), which CTranslate2 does not compute, a non-autoregressive CMLM,
and a model already quantized by :meth:`Translator.quantized` (CTranslate2 quantizes float32 weights itself,
at export with ``quantization`` or at load time with ``compute_type``).

The folder also holds tformer's tokenizer files and ``tformer_config.json`` (the model's
:class:`TransformerConfig`), so that :class:`Runtime` tokenizes, limits lengths and forbids tokens as
tformer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import ctranslate2
import numpy as np
import torch
from ctranslate2.specs import common_spec, model_spec, transformer_spec

from tformer.console import log
from tformer.data.tokenizer import Tokenizer
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer
from tformer.translator import Translator

CONFIG_FILE = "tformer_config.json"  # the tformer config, next to CTranslate2's own config.json

_ACTIVATIONS = {
    "relu": common_spec.Activation.RELU,
    "gelu": common_spec.Activation.GELU,
    "gelu_tanh": common_spec.Activation.GELUTanh,
    "silu": common_spec.Activation.SWISH,
}


def unsupported(cfg: TransformerConfig) -> str | None:
    """Why a model with ``cfg`` cannot be written for CTranslate2, or None when it can."""
    if cfg.positional == "relative":
        return "relative position bias (T5) is not exported to CTranslate2: use sinusoidal or learned positions"
    if cfg.pointer_generator:
        return "the copy mechanism (pointer_generator) has no CTranslate2 equivalent"
    if cfg.attention.kind not in ("full", "chunked"):
        return f"{cfg.attention.kind} attention is approximate and CTranslate2 computes full attention only"
    if cfg.activation not in _ACTIVATIONS:
        return f"activation {cfg.activation!r} has no CTranslate2 equivalent"
    if cfg.cross_attention.kind != "dot":
        return f"{cfg.cross_attention.kind} encoder-decoder attention has no CTranslate2 equivalent"
    return None


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _linear(spec: common_spec.LinearSpec, *layers: torch.nn.Linear) -> None:
    """One CTranslate2 linear layer from one or more tformer ones, stacked along the output rows (fused)."""
    spec.weight = np.concatenate([_array(layer.weight) for layer in layers])
    if layers[0].bias is not None:
        spec.bias = np.concatenate([_array(layer.bias) for layer in layers])


def _norm(spec: common_spec.LayerNormSpec, norm: torch.nn.Module) -> None:
    spec.gamma = _array(norm.weight)
    if getattr(norm, "bias", None) is not None:  # LayerNorm; RMSNorm has no beta
        spec.beta = _array(norm.bias)


def _attention(spec, attn, *, self_attention: bool, cfg: TransformerConfig) -> None:
    if self_attention:
        _linear(spec.linear[0], attn.q_proj, attn.k_proj, attn.v_proj)
    else:
        _linear(spec.linear[0], attn.q_proj)
        _linear(spec.linear[1], attn.k_proj, attn.v_proj)
    _linear(spec.linear[-1], attn.out_proj)
    if not cfg.scale_attention:
        spec.queries_scale = np.float32(1.0)


def _positions(positions: torch.nn.Module) -> np.ndarray:
    """The (max_len, D) rows added to the embeddings: the sinusoidal table or the learned weight."""
    return _array(positions.table if hasattr(positions, "table") else positions.weight)


def _stack(spec, stack, cfg: TransformerConfig) -> None:
    """Embeddings, positions and final norm of an encoder or decoder stack."""
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _array(stack.embed.tokens.weight)
    spec.scale_embeddings = bool(cfg.scale_embedding)
    spec.position_encodings.encodings = _positions(stack.embed.positions)
    if cfg.norm == "pre":
        _norm(spec.layer_norm, stack.final_norm)


def build_spec(model: Transformer, vocabs: Vocabularies) -> transformer_spec.TransformerSpec:
    """The validated CTranslate2 spec of ``model`` with the vocabularies of ``vocabs``.

    Raises:
        TformerError: the configuration cannot be expressed (see :func:`unsupported`), or the vocabularies
            do not match the model's embedding sizes.
    """
    if not isinstance(model, Transformer):
        raise TformerError(f"cannot export to CTranslate2: a {type(model).__name__} is not an autoregressive "
                           "encoder-decoder (CTranslate2 decodes token by token)")
    if any(not isinstance(m, torch.nn.Linear) for m in model.modules() if "Linear" in type(m).__name__):
        raise TformerError("cannot export to CTranslate2: the model's linear layers are quantized; export the "
                           "float32 model (CTranslate2 quantizes when loading: compute_type='int8')")
    cfg = model.cfg
    reason = unsupported(cfg)
    if reason:
        raise TformerError(f"cannot export to CTranslate2: {reason}")
    src_tokens = _tokens(vocabs.src, cfg.vocab_size, "source")
    tgt_tokens = _tokens(vocabs.tgt, cfg.target_vocab_size, "target")
    options = dict(pre_norm=cfg.norm == "pre", activation=_ACTIVATIONS[cfg.activation],
                   rms_norm=cfg.norm_type == "rms", head_dim=cfg.d_kv)
    spec = transformer_spec.TransformerSpec(
        transformer_spec.TransformerEncoderSpec(cfg.num_encoder_layers, cfg.num_heads, **options),
        transformer_spec.TransformerDecoderSpec(cfg.num_decoder_layers, cfg.num_heads, **options),
    )
    _stack(spec.encoder, model.encoder, cfg)
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder.layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attn, self_attention=True, cfg=cfg)
        _norm(layer_spec.self_attention.layer_norm, layer.self_attn_residual.norm)
        _linear(layer_spec.ffn.linear_0, layer.ffn.w_1)
        _linear(layer_spec.ffn.linear_1, layer.ffn.w_2)
        _norm(layer_spec.ffn.layer_norm, layer.ffn_residual.norm)
    _stack(spec.decoder, model.decoder, cfg)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder.layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attn, self_attention=True, cfg=cfg)
        _norm(layer_spec.self_attention.layer_norm, layer.self_attn_residual.norm)
        _attention(layer_spec.attention, layer.cross_attn, self_attention=False, cfg=cfg)
        _norm(layer_spec.attention.layer_norm, layer.cross_attn_residual.norm)
        _linear(layer_spec.ffn.linear_0, layer.ffn.w_1)
        _linear(layer_spec.ffn.linear_1, layer.ffn.w_2)
        _norm(layer_spec.ffn.layer_norm, layer.ffn_residual.norm)
    _linear(spec.decoder.projection, model.output_projection)
    if model.output_ids is not None:  # the tokens it does not score (output_vocab): -inf, as in the model's logits
        spec.decoder.projection.bias = _array(model.output_bias())
    if cfg.scale_output:
        spec.decoder.scale_outputs = np.float32(cfg.d_model**-0.5)

    spec.register_source_vocabulary(src_tokens)
    spec.register_target_vocabulary(tgt_tokens)
    spec.config.unk_token = tgt_tokens[cfg.unk_id]
    spec.config.bos_token = tgt_tokens[cfg.bos_id]
    spec.config.eos_token = tgt_tokens[cfg.eos_id]
    spec.config.decoder_start_token = tgt_tokens[cfg.bos_id]
    spec.config.layer_norm_epsilon = cfg.layer_norm_eps
    spec.validate()
    return spec


def _tokens(tok: Tokenizer, size: int, side: str) -> list[str]:
    """The token strings of ids 0 .. size-1: CTranslate2's vocabulary, in tformer's id order."""
    if tok.vocab_size != size:
        raise TformerError(f"cannot export to CTranslate2: the {side} tokenizer has {tok.vocab_size} ids but the "
                           f"model's embedding has {size}")
    tokens = [tok.id_to_token(i) for i in range(size)]
    if len(set(tokens)) != size:
        raise TformerError(f"cannot export to CTranslate2: the {side} vocabulary holds a token string twice")
    return tokens


def export(translator: Translator, out_dir: Path, *, quantization: str | None = None) -> dict:
    """Write ``translator``'s model, tokenizer files and config to the existing folder ``out_dir`` for CTranslate2.

    Args:
        quantization: None keeps float32 weights; or one of CTranslate2's weight types ("int8", "float16",
            ...). CTranslate2 can also convert float32 weights when loading (:class:`Runtime`'s ``compute_type``).

    Returns:
        What the ``tformer export`` command reports: the size of ``model.bin`` in MB (10^6 bytes), CTranslate2's
        version and the weights' type.
    """
    if quantization is not None and quantization not in model_spec.ACCEPTED_MODEL_TYPES:
        raise TformerError(f"quantization must be one of {', '.join(model_spec.ACCEPTED_MODEL_TYPES)}, "
                           f"got {quantization!r}")
    out_dir = Path(out_dir)
    spec = build_spec(translator.model, translator.vocabs)
    spec.optimize(quantization=quantization)
    spec.save(str(out_dir))
    translator.vocabs.save(out_dir)
    translator.model.cfg.save_json(out_dir / CONFIG_FILE)
    return {"size_mb": round((out_dir / "model.bin").stat().st_size / 1e6, 2),
            "ctranslate2_version": ctranslate2.__version__,
            "quantization": quantization or "float32"}


class Runtime:
    """Translate with a model written by :func:`export`, as :meth:`Translator.translate` does.

    Sentences are tokenized and cut as :meth:`Translator._encode` does (source + EOS), each output is limited
    as :meth:`Transformer._length_limits` says (its source length + 50, at most the model's max_len; sentences
    are grouped by source length, since CTranslate2 takes one limit per call), pad and BOS are never generated (as
    :func:`tformer.generation.beam.forbid_special`), and EOS may end a translation at once (min length 0).
    Greedy search (``beam_size=1``) therefore gives tformer's outputs, to float rounding.

    Beam search comes close to tformer's but is not the same search: CTranslate2's length penalty is |Y|^a, not
    GNMT's ((5 + |Y|) / 6)^alpha (|Y| counts EOS in both: ``return_end_token``), so ``a`` is matched to alpha per
    source length (:func:`ct2_length_penalty`); and CTranslate2 stops a sentence once ``beam_size * patience``
    hypotheses have ended, where tformer stops once no live beam can beat its best ended one (``patience`` 2 by
    default). Also, CTranslate2 removes pad and BOS before its softmax and tformer after, which adds
    log(1 - p(pad) - p(BOS)) to CTranslate2's step scores: nothing for a trained model, something for a random one.
    With alpha = 0 (and negligible p(pad), p(BOS)) the two beam searches are the same. Measured on Multi30k en-de
    test 2016 (beam 4, alpha 0.6): 995 of 1000 outputs identical to tformer's; with a = alpha and patience 1, 945.

    Args:
        compute_type: CTranslate2's ``compute_type`` ("default" = the type the weights were saved in;
            "int8" quantizes float32 weights when loading).
        intra_threads: CPU threads per translation (0 = CTranslate2's default).
    """

    def __init__(self, out_dir: str | Path, compute_type: str = "default", intra_threads: int = 0) -> None:
        d = Path(out_dir)
        if not (d / "model.bin").is_file() or not (d / CONFIG_FILE).is_file():
            raise TformerError(f"{d} holds no model written by `tformer export --format ctranslate2`")
        cfg = TransformerConfig.load_json(d / CONFIG_FILE)
        self.text = _TextSide(cfg, Vocabularies.load(d))
        try:
            self.translator = ctranslate2.Translator(str(d), device="cpu", compute_type=compute_type,
                                                     inter_threads=1, intra_threads=intra_threads)
        except (RuntimeError, ValueError) as e:
            raise TformerError(f"CTranslate2 cannot load {d}: {str(e).strip().splitlines()[0]}") from None
        tgt = self.text.vocabs.tgt
        self._tgt_ids = {tgt.id_to_token(i): i for i in range(tgt.vocab_size)}
        forbidden = [cfg.pad_id] + ([cfg.bos_id] if cfg.bos_id != cfg.eos_id else [])  # as forbid_special
        self._suppress = [[tgt.id_to_token(i)] for i in dict.fromkeys(forbidden)]

    @property
    def cfg(self) -> TransformerConfig:
        return self.text.cfg

    def translate(self, texts: Sequence[str], beam_size: int = 1, max_tokens: int = 4096, *,
                  length_penalty: float = 0.6, patience: float = 2.0, warn=None) -> list[str]:
        """Translate ``texts``; CTranslate2 batches each group of equal source length under ``max_tokens``
        source tokens. Empty sentences translate to ""; over-long ones are cut with a warning (to ``warn``,
        default stderr).

        Args:
            length_penalty: tformer's GNMT alpha, turned into CTranslate2's exponent per source length
                (see :func:`ct2_length_penalty`). Beam search only.
            patience: beam search continues until ``beam_size * patience`` hypotheses have ended (CTranslate2's
                option): 2 comes close to tformer's stopping rule. Beam search only.
        """
        if beam_size < 1:
            raise TformerError(f"beam_size must be >= 1, got {beam_size}")
        if max_tokens < 1:
            raise TformerError(f"max_tokens must be >= 1, got {max_tokens}")
        ids = self.text.encode(texts, warn or log)
        groups: dict[int, list[int]] = {}  # source length, EOS included -> its sentences
        for i, s in enumerate(ids):
            if s is not None:
                groups.setdefault(len(s), []).append(i)
        out = [""] * len(ids)
        src_tok, tgt_tok = self.text.vocabs.src, self.text.vocabs.tgt
        for n, group in sorted(groups.items()):
            limit = int(self.text.length_limits(torch.tensor([ids[group[0]]]), None, 0)[0])  # one per length
            results = self.translator.translate_batch(
                [[src_tok.id_to_token(t) for t in ids[i]] for i in group],
                beam_size=beam_size, length_penalty=ct2_length_penalty(length_penalty, n), patience=patience,
                max_decoding_length=limit, min_decoding_length=0, max_input_length=0,
                suppress_sequences=self._suppress, return_end_token=True, max_batch_size=max_tokens,
                batch_type="tokens",
            )
            for i, result in zip(group, results, strict=True):
                out[i] = tgt_tok.decode([self._tgt_ids[t] for t in result.hypotheses[0]])
        return out


def ct2_length_penalty(alpha: float, source_length: int) -> float:
    """CTranslate2's exponent a closest to GNMT's alpha for a sentence of ``source_length`` tokens (EOS included).

    Beam search ranks ended hypotheses by log P(Y | X) / lp(|Y|). tformer's lp is GNMT's ((5 + |Y|) / 6)^alpha;
    CTranslate2's is |Y|^a. Between two lengths only the ratio of the penalties matters, so the two agree to
    first order around a length L when their logarithms have the same slope there: alpha / (5 + L) = a / L, i.e.
    a = alpha L / (5 + L). L is the source length, the best guess of the output's length before decoding.
    """
    return alpha * source_length / (5.0 + source_length)


class _TextSide:
    """What :meth:`Translator._encode` and :meth:`Transformer._length_limits` read from their objects (the
    config and the vocabularies), so that :class:`Runtime` calls those helpers themselves, not copies."""

    encode = Translator._encode  # texts -> source ids + EOS per sentence (None for an empty one), cut to max_len
    length_limits = Transformer._length_limits  # (B, S) -> (B,) source length + 50, at most max_len

    def __init__(self, cfg: TransformerConfig, vocabs: Vocabularies) -> None:
        self.cfg = cfg
        self.model = SimpleNamespace(cfg=cfg)
        self.vocabs = vocabs


__all__ = ["CONFIG_FILE", "Runtime", "build_spec", "ct2_length_penalty", "export", "unsupported"]
