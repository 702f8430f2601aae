"""Non-autoregressive against autoregressive decoding on a real test set: sacreBLEU and time side by side.

    python benchmarks/nat.py --ar runs/m30k-de-en-student-kd --nat runs/m30k-de-en-cmlm \\
        --src ../shared/data/multi30k/test_2016_flickr.de.gz --ref ../shared/data/multi30k/test_2016_flickr.en.gz

Decodes the whole test set with the autoregressive model (greedy and beam 4) and with the CMLM by mask-predict
(``--iterations`` rounds x ``--length-beams`` candidates), each ``--repeats`` times, in batches of
``--max-tokens`` source tokens; and, for latency, the first ``--latency-sentences`` one at a time. Prints one
JSON object: per setting BLEU, chrF, the median seconds and the speed-up over the autoregressive greedy
search. Run it on a quiet machine: the numbers are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def timed(fn, repeats: int):
    """(result of the last call, median seconds)."""
    seconds, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return out, statistics.median(seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ar", required=True, help="the autoregressive run (same size as the CMLM)")
    p.add_argument("--nat", required=True, help="the CMLM run")
    p.add_argument("--src", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 4, 10])
    p.add_argument("--length-beams", type=int, nargs="+", default=[1, 3])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="autoregressive beam sizes")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-sentences", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from tformer.data.corpus import read_lines
    from tformer.evaluation.bleu import score
    from tformer.translator import Translator

    srcs, refs = read_lines(args.src), read_lines(args.ref)
    ar, nat = Translator.from_pretrained(args.ar), Translator.from_pretrained(args.nat)
    settings = [(f"ar beam {b}", ar, dict(beam_size=b)) for b in args.beams]
    settings += [(f"cmlm T={t} l={lb}", nat, dict(iterations=t, length_candidates=lb))
                 for lb in args.length_beams for t in args.iterations]
    rows = []
    for name, translator, kw in settings:
        def batch(t=translator, kw=kw):
            return t.translate(srcs, max_tokens=args.max_tokens, **kw)

        def alone(t=translator, kw=kw, few=srcs[: args.latency_sentences]):
            return [t.translate([s], **kw) for s in few]

        hyps, batched = timed(batch, args.repeats)
        _, single = timed(alone, 1)
        few = srcs[: args.latency_sentences]
        s = score(hyps, refs)
        rows.append({"setting": name, "bleu": s["bleu"], "chrf": s["chrf"], "batched_seconds": round(batched, 3),
                     "ms_per_sentence_alone": round(1000 * single / max(1, len(few)), 2)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for r in rows:
        r["speedup_batched"] = round(base["batched_seconds"] / r["batched_seconds"], 2)
        r["speedup_alone"] = round(base["ms_per_sentence_alone"] / r["ms_per_sentence_alone"], 2)
    print(json.dumps({"sentences": len(srcs), "ar": args.ar, "nat": args.nat, "threads": torch.get_num_threads(),
                      "repeats": args.repeats, "results": rows}))


if __name__ == "__main__":
    main()
