"""The fixed workloads of the speed benchmarks, the peers built on them, and the FLOP count.

Configs (shared vocabulary of 8,000, tied embeddings, fp32, dropout 0.1 on embedding sums and
sub-layer outputs as §5.4 places it):

    small  d_model 256, 3+3 layers, 4 heads, d_ff 1024
    base   d_model 512, 6+6 layers, 8 heads, d_ff 2048 (the paper's base)

Token ids follow Hugging Face Marian's convention (eos 0, unk 1, pad = decoder start = V - 1), so
that one random ``MarianMTModel`` can be loaded into tformer (``from_hf_marian``) and converted for
CTranslate2 with the same weights.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from dataclasses import asdict, dataclass

VOCAB = 8000
EOS, UNK, PAD = 0, 1, VOCAB - 1


@dataclass(frozen=True)
class Workload:
    name: str
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    vocab: int = VOCAB
    dropout: float = 0.1


CONFIGS = {
    "small": Workload("small", 256, 3, 4, 1024),
    "base": Workload("base", 512, 6, 8, 2048),
}

# Training step: 64 pairs, 24 source and 24 target tokens.
TRAIN_BATCH, TRAIN_SRC, TRAIN_TGT = 64, 24, 24
# Decoding: 256 sources of 24 tokens, every output exactly 24 tokens.
DECODE_SENTENCES, DECODE_SRC, DECODE_TGT = 256, 24, 24
LABEL_SMOOTHING = 0.1


def train_matmul_flops(w: Workload, batch: int = TRAIN_BATCH, s: int = TRAIN_SRC, t: int = TRAIN_TGT) -> int:
    """Matmul FLOPs of one training step, counted analytically.

    Forward multiply-accumulates (MACs) per sentence, D = d_model, F = d_ff, V = vocabulary, N = layers:
      encoder layer:  S * (4 D^2 + 2 D F)  projections Q, K, V, W^O and the FFN
                      + 2 * S * S * D      Q K^T and weights @ V
      decoder layer:  T * (4 D^2 + 2 D F)  self-attention projections and the FFN
                      + 2 * T * T * D      causal self-attention (counted in full, as the kernels compute it)
                      + T * 2 D^2 + S * 2 D^2   cross-attention: Q and W^O on T, K and V on S
                      + 2 * T * S * D      cross-attention scores and weights @ V
      output layer:   T * D * V
    A training step is forward + backward = 3 x forward (the backward computes input and weight
    gradients, two matmuls per forward matmul), and one MAC is 2 FLOPs. Embedding lookups,
    softmax, LayerNorm and Adam are not matmuls and are not counted.
    """
    d, f, n, v = w.d_model, w.d_ff, w.num_layers, w.vocab
    enc = s * (4 * d * d + 2 * d * f) + 2 * s * s * d
    dec = t * (4 * d * d + 2 * d * f) + 2 * t * t * d + t * 2 * d * d + s * 2 * d * d + 2 * t * s * d
    macs = batch * (n * (enc + dec) + t * d * v)
    return 3 * 2 * macs


def hf_marian_config(w: Workload):
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=w.vocab, d_model=w.d_model, encoder_layers=w.num_layers, decoder_layers=w.num_layers,
        encoder_attention_heads=w.num_heads, decoder_attention_heads=w.num_heads,
        encoder_ffn_dim=w.d_ff, decoder_ffn_dim=w.d_ff, activation_function="relu",
        dropout=w.dropout, attention_dropout=0.0, activation_dropout=0.0,
        max_position_embeddings=512, scale_embedding=True, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True, pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS,
        forced_eos_token_id=None, bad_words_ids=None, num_beams=1, max_length=512,
    )


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# For peak-memory workers: glibc normally raises its mmap threshold after large frees (up to 32 MiB) and
# keeps freed blocks in its heap, so resident memory stays high after a step and the next step's peak
# hides in it. A fixed 64 KiB threshold makes every tensor of note its own mapping, returned on free.
MEASURABLE_MALLOC = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def rss_mib() -> float:
    """Resident memory of this process now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> float:
    """Reset the kernel's high-water mark of resident memory to the current size (Linux: writing 5 to
    /proc/self/clear_refs) and return that size, MiB. :func:`peak_rss_since_reset_mib` then reads the
    peak of what runs in between, unlike ``ru_maxrss``, which keeps the peak of the process's whole life."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_mib()


def peak_rss_since_reset_mib() -> float:
    """VmHWM: the peak resident memory since :func:`reset_peak_rss`, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def setup_threads() -> int:
    import torch

    n = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def emit(record: dict) -> None:
    """A worker's one result: a JSON line on stdout, tagged so the driver can find it."""
    print("BENCH_RESULT " + json.dumps(record), flush=True)


def median(xs: list[float]) -> float:
    ys = sorted(xs)
    m = len(ys) // 2
    return ys[m] if len(ys) % 2 else (ys[m - 1] + ys[m]) / 2


def workload_dict(w: Workload) -> dict:
    return asdict(w)


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else math.nan


def die(msg: str) -> None:
    print(f"benchmark: error: {msg}", file=sys.stderr)
    sys.exit(2)
