"""One training-step measurement in a fresh process: forward + backward + Adam step with label-smoothed
cross-entropy, on a fixed batch of 64 pairs (24 source, 24 target tokens).

    python benchmarks/train_step.py --impl tformer --config small [--warmup 3 --steps 10] [--precision bf16]

Implementations: ``tformer`` (its Trainer's loss and optimizer), ``hf`` (transformers' MarianMTModel),
``torch`` (torch.nn.Transformer with embeddings x sqrt(d_model), sinusoidal positions and a tied
output layer) and ``xtransformers`` (x_transformers.XTransformer). The peers use PyTorch's fused
``cross_entropy(label_smoothing=0.1)``, which is how their users add label smoothing; tformer uses
its own (``tformer.training.label_smoothing``). ``--precision bf16`` runs every implementation's forward
pass and loss under ``torch.autocast("cpu", torch.bfloat16)``, as tformer's ``train.precision: bf16`` (or
``fast`` on a CPU with native bf16) does. Prints one ``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from common import (
    CONFIGS,
    LABEL_SMOOTHING,
    PAD,
    TRAIN_BATCH,
    TRAIN_SRC,
    TRAIN_TGT,
    Workload,
    emit,
    gflops,
    hf_marian_config,
    median,
    peak_rss_mib,
    setup_threads,
    train_matmul_flops,
)
from torch import nn


def batch(w: Workload, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, w.vocab - 1, (TRAIN_BATCH, TRAIN_SRC), generator=g)  # (B, S), no pad, no specials
    tgt = torch.randint(4, w.vocab - 1, (TRAIN_BATCH, TRAIN_TGT + 1), generator=g)  # BOS-free target + 1
    return src, tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()  # src, tgt_in (B, T), tgt_out (B, T)


def peer_loss(logits, tgt_out):
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v), tgt_out.reshape(-1), ignore_index=PAD,
                           label_smoothing=LABEL_SMOOTHING, reduction="sum")


def peer_step(model: nn.Module, forward):
    """A peer's training step: its forward (src, tgt_in) -> logits, torch's label-smoothed cross-entropy, Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=PEER_FUSED_ADAM or None)

    def step(src, tgt_in, tgt_out):
        with autocast():  # the forward pass and loss only, as a Trainer's step autocasts them
            loss = peer_loss(forward(src, tgt_in), tgt_out)
        (loss / (tgt_out != PAD).sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def autocast():
    """CPU autocast to bfloat16 with ``--precision bf16``, else nothing (backward and Adam stay outside, as in a
    Trainer's step)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST_BF16)


def build_tformer(w: Workload, compile_: bool):
    import tformer
    from tformer.tasks.translation import sequence_loss
    from tformer.training.optimizer import build_optimizer

    cfg = tformer.TransformerConfig(
        vocab_size=w.vocab, d_model=w.d_model, num_heads=w.num_heads, d_ff=w.d_ff, num_encoder_layers=w.num_layers,
        num_decoder_layers=w.num_layers, dropout=w.dropout, pad_id=PAD, bos_id=2, eos_id=0, unk_id=1, max_len=512,
    )
    model = tformer.Transformer(cfg).train()
    opt = build_optimizer(model.parameters(), lr=1e-4)
    loss_fn = torch.compile(sequence_loss) if compile_ else sequence_loss

    def step(src, tgt_in, tgt_out):
        with autocast():  # the forward pass and loss only, as tformer's Trainer autocasts them
            out = loss_fn(model, src, tgt_in, tgt_out, LABEL_SMOOTHING)  # the Trainer's loss
        (out.loss / out.num_tokens).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    return model, step


def build_hf(w: Workload, compile_: bool):
    from transformers import MarianMTModel

    model = MarianMTModel(hf_marian_config(w)).train()
    call = torch.compile(model) if compile_ else model

    def forward(src, tgt_in):
        return call(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt_in).logits

    return model, peer_step(model, forward)


class TorchSeq2Seq(nn.Module):
    """torch.nn.Transformer with the paper's inputs and output: shared embeddings x sqrt(d_model) plus
    sinusoids, dropout on the sums, and a pre-softmax layer tied to the embedding matrix."""

    def __init__(self, w: Workload) -> None:
        super().__init__()
        self.embed = nn.Embedding(w.vocab, w.d_model)
        nn.init.normal_(self.embed.weight, std=w.d_model**-0.5)
        pos = torch.arange(512, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, w.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / w.d_model))
        pe = torch.zeros(512, w.d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)
        self.drop = nn.Dropout(w.dropout)
        self.core = nn.Transformer(w.d_model, w.num_heads, w.num_layers, w.num_layers, w.d_ff, dropout=w.dropout,
                                   batch_first=True)
        for m in self.core.modules():  # dropout only where the paper puts it: no attention or FFN-inner dropout
            if isinstance(m, nn.MultiheadAttention):
                m.dropout = 0.0
            if isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
                m.dropout.p = 0.0
        self.scale = math.sqrt(w.d_model)

    def forward(self, src, tgt_in):
        s, t = src.shape[1], tgt_in.shape[1]
        x = self.drop(self.embed(src) * self.scale + self.pe[:s])
        y = self.drop(self.embed(tgt_in) * self.scale + self.pe[:t])
        src_pad = src == PAD
        causal = nn.Transformer.generate_square_subsequent_mask(t, dtype=torch.bool)
        h = self.core(x, y, tgt_mask=causal, src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad,
                      tgt_is_causal=True)
        return F.linear(h, self.embed.weight)


def build_torch(w: Workload, compile_: bool):
    model = TorchSeq2Seq(w).train()
    forward = torch.compile(model) if compile_ else model
    return model, peer_step(model, forward)


def build_xtransformers(w: Workload, compile_: bool):
    from x_transformers import XTransformer

    model = XTransformer(
        dim=w.d_model, tie_token_emb=True, pad_value=PAD, ignore_index=PAD,
        enc_num_tokens=w.vocab, enc_depth=w.num_layers, enc_heads=w.num_heads, enc_max_seq_len=512,
        enc_attn_dim_head=w.d_model // w.num_heads, enc_ff_mult=w.d_ff // w.d_model, enc_pre_norm=False,
        enc_emb_dropout=w.dropout, enc_attn_sublayer_dropout=w.dropout, enc_ff_sublayer_dropout=w.dropout,
        dec_num_tokens=w.vocab, dec_depth=w.num_layers, dec_heads=w.num_heads, dec_max_seq_len=512,
        dec_attn_dim_head=w.d_model // w.num_heads, dec_ff_mult=w.d_ff // w.d_model, dec_pre_norm=False,
        dec_emb_dropout=w.dropout, dec_attn_sublayer_dropout=w.dropout, dec_ff_sublayer_dropout=w.dropout,
    ).train()
    net = model.decoder.net
    net.to_logits.weight = net.token_emb.emb.weight  # tie the pre-softmax layer to the (shared) embeddings

    def forward(src, tgt_in):
        mask = src != PAD
        memory = model.encoder(src, mask=mask, return_embeddings=True)
        return model.decoder.net(tgt_in, context=memory, context_mask=mask)

    forward = torch.compile(forward) if compile_ else forward

    return model, peer_step(model, forward)


PEER_FUSED_ADAM = False  # --peer-adam fused: the peers get torch's fused Adam too (tformer's Trainer uses it)
AUTOCAST_BF16 = False  # --precision bf16: each forward pass and loss under CPU autocast to bfloat16

BUILDERS = {"tformer": build_tformer, "hf": build_hf, "torch": build_torch, "xtransformers": build_xtransformers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=sorted(BUILDERS), required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    ap.add_argument("--peer-adam", choices=("default", "fused"), default="default",
                    help="the peers' Adam: torch's default (what their trainers use) or fused")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: each step under CPU autocast to bfloat16 (fast only where the CPU has AVX512-BF16/AMX)")
    args = ap.parse_args()
    global PEER_FUSED_ADAM
    PEER_FUSED_ADAM = args.peer_adam == "fused"
    threads = setup_threads()
    torch.manual_seed(0)
    w = CONFIGS[args.config]
    global AUTOCAST_BF16
    AUTOCAST_BF16 = args.precision == "bf16"
    model, step = BUILDERS[args.impl](w, args.compile)
    src, tgt_in, tgt_out = batch(w)

    rss_before = peak_rss_mib()
    for _ in range(args.warmup):
        step(src, tgt_in, tgt_out)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step(src, tgt_in, tgt_out)
        float(loss)
        times.append(time.perf_counter() - t0)
    sec = median(times)
    flops = train_matmul_flops(w)
    emit({
        "part": "train", "impl": args.impl + ("+compile" if args.compile else "")
        + ("+bf16" if args.precision == "bf16" else ""), "config": args.config,
        "peer_adam": args.peer_adam, "precision": args.precision,
        "threads": threads, "params": sum(p.numel() for p in model.parameters()),
        "step_seconds": sec, "step_seconds_all": times,
        "tgt_tok_s": TRAIN_BATCH * TRAIN_TGT / sec, "all_tok_s": TRAIN_BATCH * (TRAIN_SRC + TRAIN_TGT) / sec,
        "matmul_gflop_per_step": flops / 1e9, "gflop_s": gflops(flops, sec),
        "peak_rss_mib": peak_rss_mib(), "train_peak_mib": peak_rss_mib() - rss_before,
    })


if __name__ == "__main__":
    main()
