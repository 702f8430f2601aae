"""Decoding tokens/s on a GPU: tformer against CTranslate2 (and Hugging Face) on the same weights.

    python benchmarks/gpu_decode.py --json-out FILE [--config base] [--device cuda]
                                    [--precisions fp32,fp16] [--modes beam/32,greedy/1] [--impls tformer,ct2,hf]

The weights and sources come from ``decode.py prepare`` (a random Marian model, converted), the timing
from ``decode.py measure``, run here in one process for every engine, precision and search, in that
nesting order (interleaved, so that a drift of the machine hits all engines alike). A measurement that
cannot run is recorded with its reason and the others go on: CTranslate2 missing (it is in the ``bench``
extra) or without CUDA support, float16 where the device has none (CTranslate2 on the CPU). Writes one
JSON document: the measurements, and the ratio tformer / peer per precision and search.

``--sentences`` fewer than 256 and ``--config tiny`` make the quick check of ``gpu_check.sh --cpu-dry-run``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import decode
import torch
from common import DECODE_SENTENCES
from gpu_train import WORKLOADS


def peer_status(impl: str, device: str, precision: str) -> str | None:
    """Why ``impl`` cannot run on ``device`` in ``precision`` here, or None if it can."""
    if impl.startswith("ct2"):
        if importlib.util.find_spec("ctranslate2") is None:
            return "ctranslate2 is not installed (pip install -e '.[bench]')"
        import ctranslate2

        try:
            supported = ctranslate2.get_supported_compute_types(device)
        except Exception as e:  # a CUDA build that cannot start (driver, runtime or libraries missing)
            return f"CTranslate2 cannot use {device}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        wanted = {"fp32": "float32", "fp16": "float16"}[precision]
        if wanted not in supported:
            return f"CTranslate2 has no {wanted} on {device} (it has {', '.join(sorted(supported))})"
    if impl == "hf" and importlib.util.find_spec("transformers") is None:
        return "transformers is not installed"
    return None


def convert_for_ct2(d: Path) -> str | None:
    """``ct2-transformers-converter --quantization float32`` of ``d/hf`` into ``d/ct2``, as ``decode.py prepare``
    makes it, but in this process (no second start of transformers); the error, or None."""
    from ctranslate2.converters import TransformersConverter

    try:
        TransformersConverter(str(d / "hf")).convert(str(d / "ct2"), quantization="float32", force=True)
    except Exception as e:
        return f"the CTranslate2 conversion failed: {type(e).__name__}: {str(e)[:300]}"
    return None


def agreement(work: Path, engines: list[tuple[str, str]], device: str, why_not) -> dict:
    """Greedy outputs of the first 32 sentences (one batch) of each (engine, precision) on ``device``: the
    fraction of sentences identical to tformer's in fp32 there (fp16 may differ where two logits are close)."""
    src = torch.load(work / "src.pt")[:32]
    outputs = {}
    for impl, precision in [("tformer", "fp32"), *engines]:
        key = f"{impl} {precision}"
        if key in outputs or why_not(impl, precision):
            continue
        try:
            outputs[key] = decode.load_engine(impl, work, device, precision)(src, 1)
        except Exception as e:
            outputs[key] = f"{type(e).__name__}: {str(e)[:300]}"
    ref = outputs.get("tformer fp32")
    if not isinstance(ref, list):
        return {"tformer fp32": ref or "not run"}
    return {key: rows if isinstance(rows, str) else sum(a == b for a, b in zip(rows, ref, strict=True)) / len(ref)
            for key, rows in outputs.items() if key != "tformer fp32"}


def ratios(results: list[dict]) -> dict:
    """tformer's tokens/s over each peer's, per precision and search."""
    speed = {(r["impl"], r["precision"], r["mode"], r["batch"]): r["tgt_tok_s"] for r in results if "tgt_tok_s" in r}
    out = {}
    for (impl, precision, mode, batch), tok_s in speed.items():
        ours = speed.get(("tformer", precision, mode, batch))
        if impl != "tformer" and ours:
            out[f"tformer/{impl} {precision} {mode}/{batch}"] = ours / tok_s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-out", type=Path, required=True)
    ap.add_argument("--config", choices=sorted(WORKLOADS), default="base")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--modes", default="beam/32,greedy/1", help="searches / batch sizes")
    ap.add_argument("--impls", default="tformer,ct2,hf")
    ap.add_argument("--sentences", type=int, default=DECODE_SENTENCES)
    ap.add_argument("--warmup", type=int, default=1, help="batches decoded before timing")
    ap.add_argument("--work", type=Path, default=None, help="folder for the weights (default: a temporary one)")
    args = ap.parse_args()

    if importlib.util.find_spec("transformers") is None:  # prepare builds the weights with it
        args.json_out.write_text(json.dumps({"skipped": "transformers is not installed: decode.py prepare needs it "
                                                        "(pip install -e '.[bench]')"}) + "\n")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    impls = args.impls.split(",")
    precisions = args.precisions.split(",")
    modes = [(m.split("/")[0], int(m.split("/")[1])) for m in args.modes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        t0 = time.perf_counter()
        decode.prepare(args.config, work, workload=WORKLOADS[args.config], ct2=(), sentences=args.sentences)
        unprepared = {}  # engine -> why its weights are missing
        if "ct2" in impls and peer_status("ct2", "cpu", "fp32") is None:
            unprepared["ct2"] = convert_for_ct2(work)
        prepare_s = time.perf_counter() - t0

        def why_not(impl: str, precision: str) -> str | None:
            return unprepared.get(impl) or peer_status(impl, args.device, precision)

        same = agreement(work, [(i, p) for p in precisions for i in impls], args.device, why_not)
        results = []
        for precision in precisions:
            for mode, batch in modes:
                for impl in impls:
                    entry = {"impl": impl, "precision": precision, "mode": mode, "batch": batch}
                    reason = why_not(impl, precision)
                    if reason:
                        results.append({**entry, "skipped": reason})
                        continue
                    try:
                        rec = decode.measure(work, impl, mode, batch, args.warmup, args.device, precision)
                        results.append({**entry, **rec})
                    except (Exception, SystemExit) as e:  # one engine failing (a missing CUDA library, outputs
                        # of the wrong length: measure's SystemExit) is a result too
                        results.append({**entry, "error": f"{type(e).__name__}: {str(e)[:500]}"})
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    doc = {"benchmark": "decoding, target tokens/s; every output exactly 24 tokens", "config": args.config,
           "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
           "sentences": args.sentences, "prepare_seconds": prepare_s, "identical_to_tformer_fp32_greedy": same,
           "results": results, "ratios": ratios(results)}
    args.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"identical": same, "ratios": doc["ratios"]}, indent=1))


if __name__ == "__main__":
    main()
