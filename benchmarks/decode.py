"""Decoding measurements on the same weights: tformer, Hugging Face ``generate`` and CTranslate2.

    python benchmarks/decode.py prepare --config small --dir DIR      # weights, conversions, sources
    python benchmarks/decode.py parity --dir DIR                       # greedy outputs of all engines agree?
    python benchmarks/decode.py measure --dir DIR --impl tformer --mode beam --batch 32
    python benchmarks/decode.py measure --dir DIR --impl ct2 --device cuda --precision fp16   # on a GPU

``prepare`` builds a random ``MarianMTModel`` from the config (seeded), saves it with a word-level
tokenizer over its 8,000 ids (so that ``ct2-transformers-converter`` can read it), converts it for
CTranslate2 (float32, and int8), loads it into tformer with ``from_hf_marian`` and writes 256 random
source sentences of 24 tokens (23 + EOS). Every output is forced to exactly 24 tokens
(``min_len = max_len = 24``). ``measure`` prints one ``BENCH_RESULT {json}`` line.

On a GPU (``--device cuda``; ``benchmarks/gpu_decode.py`` runs the GPU comparison) each engine runs there,
in float32 or, with ``--precision fp16``, in float16 (tformer and Hugging Face: the weights cast to fp16;
CTranslate2: ``compute_type="float16"`` on the float32 conversion). The defaults are the CPU and float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import (
    CONFIGS,
    DECODE_SENTENCES,
    DECODE_SRC,
    DECODE_TGT,
    EOS,
    PAD,
    UNK,
    Workload,
    emit,
    hf_marian_config,
    median,
)
from common import setup_threads as _setup_threads

IMPLS = ("tformer", "tformer-int8", "hf", "ct2", "ct2-int8")
BATCH1_SENTENCES = 32  # batch-1 runs decode the first 32 sentences (one at a time)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def token(i: int) -> str:
    return {EOS: "</s>", UNK: "<unk>", PAD: "<pad>"}.get(i, f"t{i}")


def prepare(config: str, d: Path, seed: int = 0, *, workload: Workload | None = None,
            ct2: tuple[str, ...] = ("float32", "int8"), sentences: int = DECODE_SENTENCES) -> None:
    """The weights of every engine and the sources in ``d``. ``workload``: one not in CONFIGS (named
    ``config``); ``ct2``: the CTranslate2 conversions to make (none without ctranslate2); ``sentences``:
    how many sources (fewer: a quick check)."""
    from tokenizers import Tokenizer, models
    from transformers import MarianMTModel, PreTrainedTokenizerFast

    import tformer

    w = workload or CONFIGS[config]
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hf = MarianMTModel(hf_marian_config(w)).eval()
    hf.save_pretrained(d / "hf")
    vocab = {token(i): i for i in range(w.vocab)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    tok.save_pretrained(d / "hf")
    for quant, out in (("float32", "ct2"), ("int8", "ct2-int8")):
        if quant not in ct2:
            continue
        converter = str(Path(sys.executable).parent / "ct2-transformers-converter")
        subprocess.run([converter, "--model", str(d / "hf"), "--output_dir", str(d / out), "--quantization", quant,
                        "--force"], check=True, capture_output=True, text=True)
    tformer.interop.from_hf_marian(hf).save_pretrained(d / "tformer")
    g = torch.Generator().manual_seed(seed + 1)
    src = torch.randint(4, w.vocab - 1, (sentences, DECODE_SRC), generator=g)
    src[:, -1] = EOS
    torch.save(src, d / "src.pt")
    (d / "workload.json").write_text(json.dumps({"config": config}))


def load_engine(impl: str, d: Path, device: str = "cpu", precision: str = "fp32"):
    """A function (B, S) source ids, beam size -> list of B lists of output ids; the engine on ``device``
    ("cpu" or "cuda") in ``precision`` ("fp32" or "fp16"; the int8 engines are int8)."""
    if impl.endswith("int8") and precision != "fp32":
        raise ValueError(f"{impl} is int8: no {precision}")
    if impl.startswith("ct2"):
        import ctranslate2

        threads = int(os.environ.get("CT2_THREADS", os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
        path = d / ("ct2-int8" if impl == "ct2-int8" else "ct2")
        compute = "int8" if impl == "ct2-int8" else {"fp32": "float32", "fp16": "float16"}[precision]
        tr = ctranslate2.Translator(str(path), device=device, intra_threads=threads, inter_threads=1,
                                    compute_type=compute)

        def run(src: torch.Tensor, beam: int) -> list[list[int]]:
            batch = [[token(i) for i in row] for row in src.tolist()]
            res = tr.translate_batch(batch, beam_size=beam, max_batch_size=len(batch), min_decoding_length=DECODE_TGT,
                                     max_decoding_length=DECODE_TGT, length_penalty=1.0, return_scores=False)
            return [[int(t[1:]) if t.startswith("t") else {"</s>": EOS, "<unk>": UNK}[t] for t in r.hypotheses[0]]
                    for r in res]

        return run
    if impl == "hf":
        from transformers import MarianMTModel

        hf = MarianMTModel.from_pretrained(d / "hf").eval()
        if device != "cpu" or precision != "fp32":
            hf = hf.to(device=device, dtype=DTYPES[precision])

        @torch.inference_mode()
        def run(src: torch.Tensor, beam: int) -> list[list[int]]:
            src = src.to(device) if device != "cpu" else src
            out = hf.generate(src, attention_mask=src != PAD, num_beams=beam, do_sample=False,
                              min_new_tokens=DECODE_TGT, max_new_tokens=DECODE_TGT, length_penalty=1.0,
                              early_stopping=False, bad_words_ids=[[PAD]])
            return [row[1:].tolist() for row in out]  # drop the decoder start token

        return run
    import tformer

    model = tformer.Transformer.from_pretrained(d / "tformer").eval()
    if impl == "tformer-int8":
        if device != "cpu":
            raise ValueError("tformer-int8 (PyTorch's dynamic int8 quantization) runs on the CPU only")
        from tformer.nn.quantize import quantize_dynamic_int8

        model = quantize_dynamic_int8(model)
    elif device != "cpu" or precision != "fp32":
        model = model.to(device=device, dtype=DTYPES[precision])

    @torch.inference_mode()
    def run(src: torch.Tensor, beam: int) -> list[list[int]]:
        src = src.to(device) if device != "cpu" else src
        out = model.generate(src, beam_size=beam, max_len=DECODE_TGT, min_len=DECODE_TGT, length_penalty=1.0)
        return out.tolist()

    return run


def parity(d: Path) -> dict:
    """Greedy outputs of every engine on all sentences, compared with tformer fp32's."""
    src = torch.load(d / "src.pt")
    outs = {}
    for impl in IMPLS:
        run = load_engine(impl, d)
        outs[impl] = [row for i in range(0, len(src), 32) for row in run(src[i : i + 32], 1)]
    ref = outs["tformer"]
    report = {}
    for impl, rows in outs.items():
        same = sum(a == b for a, b in zip(rows, ref, strict=True))
        tok = sum(x == y for a, b in zip(rows, ref, strict=True) for x, y in zip(a, b, strict=False))
        report[impl] = {"identical_sentences": same / len(ref), "identical_tokens": tok / (len(ref) * DECODE_TGT)}
    return report


def measure(d: Path, impl: str, mode: str, batch: int, warmup: int, device: str = "cpu",
            precision: str = "fp32") -> dict:
    threads = _setup_threads()
    src = torch.load(d / "src.pt")
    if batch == 1:
        src = src[:BATCH1_SENTENCES]
    run = load_engine(impl, d, device, precision)
    beam = 4 if mode == "beam" else 1
    batches = [src[i : i + batch] for i in range(0, len(src), batch)]
    for b in batches[:warmup]:
        run(b, beam)
    times, lengths = [], []
    t_all = time.perf_counter()
    for b in batches:
        t0 = time.perf_counter()
        out = run(b, beam)
        times.append(time.perf_counter() - t0)
        lengths.extend(len(r) for r in out)
    total = time.perf_counter() - t_all
    if set(lengths) != {DECODE_TGT}:
        raise SystemExit(f"{impl}: outputs are not all {DECODE_TGT} tokens long: {sorted(set(lengths))[:5]}")
    n_tok = len(src) * DECODE_TGT
    config = json.loads((d / "workload.json").read_text())["config"]
    if impl.startswith("ct2"):
        threads = int(os.environ.get("CT2_THREADS", threads))
    record = {"part": "decode", "impl": impl, "config": config, "mode": mode, "batch": batch, "threads": threads,
              "sentences": len(src), "tgt_tok_s": n_tok / total, "seconds": total,
              "latency_per_batch_ms": 1000 * median(times)}
    if device != "cpu" or precision != "fp32":
        record.update(device=device, precision=precision)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--dir", type=Path, required=True)
    p = sub.add_parser("parity")
    p.add_argument("--dir", type=Path, required=True)
    p = sub.add_parser("measure")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--mode", choices=("greedy", "beam"), default="beam")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1, help="batches decoded before timing")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=tuple(DTYPES), default="fp32", help="fp16: tformer, hf and ct2 only")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.config, args.dir)
    elif args.cmd == "parity":
        print(json.dumps(parity(args.dir)))
    else:
        emit(measure(args.dir, args.impl, args.mode, args.batch, args.warmup, args.device, args.precision))


if __name__ == "__main__":
    sys.exit(main())
