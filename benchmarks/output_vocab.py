"""A restricted output vocabulary (``data.output_vocab: target``) against scoring every token, side by side.

    python benchmarks/output_vocab.py configs/multi30k_de_en.yaml [--updates 12] [--work DIR] [override ...]

Builds the recipe's task and model twice in this process, from the same data and the same seed: once scoring all
target tokens (``data.output_vocab=all``) and once only the subwords of the training targets and the special tokens
(``target``). Then it times training updates (forward, fused label-smoothed loss, backward, fused Adam) of both on
the same real batches: the first of a seeded epoch (``TokenBatchSampler``, at most ``train.max_tokens`` padded
tokens), each batch run by both, in alternating order. The first two batches warm up. The machine's fp32 matmul rate
(``benchmarks/matmul.py``'s largest size) is measured beside them. Prints one BENCH_RESULT line: the median update
time of each, their ratio (the speed-up), the vocabulary sizes.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from common import emit, median, setup_threads
from matmul import rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--updates", type=int, default=12, help="timed updates of each (after 2 warm-up ones)")
    ap.add_argument("--work", default="", help="where the two runs' tokenizer and corpus cache go (default: a "
                    "temporary folder)")
    args = ap.parse_args()
    threads = setup_threads()
    import torch

    from tformer.data.batching import TokenBatchSampler
    from tformer.tasks.run import load_run_config
    from tformer.tasks.translation import TranslationTask, sequence_loss

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        built = {}
        for vocab in ("all", "target"):
            cfg = load_run_config(args.config, [*args.overrides, f"run_dir={work / vocab}",
                                                f"data.output_vocab={vocab}", f"data.cache_dir={work / 'cache'}"])
            torch.manual_seed(cfg.seed)
            task, model = TranslationTask.build(cfg, Path(cfg.run_dir), False)
            built[vocab] = task, model.train(), torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        eps = cfg.train.label_smoothing
        sampler = TokenBatchSampler(*built["all"][0].lengths("train"), cfg.train.max_tokens, shuffle=True,
                                    seed=cfg.seed)  # the batches of a seeded epoch, as a run's sampler makes them
        groups = list(itertools.islice(iter(sampler), args.updates + 2))
        times: dict[str, list[float]] = {"all": [], "target": []}
        for i, group in enumerate(groups):
            for vocab in ("all", "target") if i % 2 == 0 else ("target", "all"):
                task, model, opt = built[vocab]
                b = task.collate("train", group, model)
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                out = sequence_loss(model, b.src, b.tgt_in, b.tgt_out, eps)
                out.loss.div(out.num_tokens).backward()
                opt.step()
                if i >= 2:
                    times[vocab].append(time.perf_counter() - t0)
        med = {vocab: median(ts) for vocab, ts in times.items()}
        emit({"part": "output_vocab", "config": args.config, "overrides": args.overrides, "threads": threads,
              "updates_each": args.updates, "target_vocab": built["all"][1].cfg.target_vocab_size,
              "output_vocab": built["target"][1].cfg.output_vocab, "median_update_s": med,
              "speedup": med["all"] / med["target"], "matmul_gflop_s": rate(4096)})


if __name__ == "__main__":
    main()
