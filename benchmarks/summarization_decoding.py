"""Decoding settings of a summarization run: ROUGE (and how often a summary repeats a word) for each setting, on
validation texts; then one chosen setting on the test texts, beside the lead baseline. Prints JSON lines.

    python benchmarks/summarization_decoding.py valid runs/sum-copy --texts 500
    python benchmarks/summarization_decoding.py valid runs/sum-copy --grid '[[4, 1.0, 3, 7], [4, 1.0, 3, 0]]'
    python benchmarks/summarization_decoding.py test runs/sum-copy --grid '[[4, 1.0, 3, 7]]'

A setting is [beam size, length penalty alpha, no_repeat_ngram_size, min_len]; the default grid is beam 1 and 4,
alpha 0.6 / 1.0 / 1.5 (beam 4), with and without a ban on repeated 3-grams. Tune on ``valid``, report ``test``
(every test text) once. How the README's summarization table was made.
"""

from __future__ import annotations

import argparse
import json
import time

from tformer.evaluation.rouge import lead_baseline, rouge
from tformer.generation import GenerationOptions
from tformer.tasks import open_run
from tformer.tasks.translation import read_pairs

DEFAULT_GRID = [(b, lp, nr, 0) for b in (1, 4) for lp in (0.6, 1.0, 1.5) for nr in (0, 3) if b == 4 or lp == 1.0]


def repeats_a_word(text: str) -> bool:
    words = text.lower().split()
    return len(set(words)) < len(words)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("split", choices=["valid", "test"])
    p.add_argument("run_dir")
    p.add_argument("--texts", type=int, default=None, help="the first N texts (default: valid 500, test all)")
    p.add_argument("--grid", default=None, help="JSON list of [beam, alpha, no_repeat_ngram_size, min_len]")
    args = p.parse_args()
    predictor = open_run(args.run_dir)
    pairs = read_pairs(predictor.cfg, args.split)
    n = args.texts or (500 if args.split == "valid" else len(pairs))
    texts, refs = [s for s, _ in pairs[:n]], [t for _, t in pairs[:n]]
    grid = [tuple(g) for g in json.loads(args.grid)] if args.grid else DEFAULT_GRID
    for beam, alpha, no_repeat, min_len in grid:
        t0 = time.process_time()
        options = GenerationOptions(beam_size=beam, length_penalty=alpha, no_repeat_ngram_size=no_repeat,
                                    min_len=min_len, max_len=predictor.cfg.data.max_len + 1)
        hyps = predictor.summarizer.translate(texts, options)
        scores = {k: round(v, 2) for k, v in rouge(hyps, refs).items()}
        print(json.dumps({"run": args.run_dir, "split": args.split, "texts": n, "beam": beam, "length_penalty": alpha,
                          "no_repeat_ngram_size": no_repeat, "min_len": min_len, **scores,
                          "mean_words": round(sum(len(h.split()) for h in hyps) / n, 2),
                          "repeat_a_word_pct": round(100 * sum(map(repeats_a_word, hyps)) / n, 1),
                          "cpu_s": round(time.process_time() - t0, 1)}), flush=True)
    lead = {k: round(v, 2) for k, v in lead_baseline(texts, refs).items()}
    print(json.dumps({"split": args.split, "texts": n, "lead": lead,
                      "references_repeat_a_word_pct": round(100 * sum(map(repeats_a_word, refs)) / n, 1)}))


if __name__ == "__main__":
    main()
