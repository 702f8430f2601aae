"""``tformer demo``: the whole job on data tformer makes itself.

1. generate an English -> German number-words task (train / valid / held-out test numbers);
2. train the recipe ``tformer/recipes/demo.yaml`` (``configs/demo.yaml`` links to it) on it;
3. translate the held-out test numbers with beam search and score them;
4. draw the cross-attention of the first test number (every head of the last decoder layer) into
   ``RUN_DIR/cross_attention.png`` (when matplotlib is installed: ``pip install 'tformer[viz]'``);
5. print a handful of translations and, as the last line, a JSON summary:
   ``{"exact_match": ..., "bleu": ..., "chrf": ..., "train_seconds": ..., "run_dir": ..., "cross_attention": ...}``.

The German side of each pair is a single word ("dreihunderteinundzwanzig"), so word-level BLEU
would be 0 or 100 per sentence; BLEU is computed on characters (sacreBLEU ``tokenize="char"``,
stated in the reported signature), with chrF beside it.

``--task names`` adds a made-up name to every pair that must pass through unchanged ("... for Brauxel"
-> "... für Brauxel"; :func:`tformer.data.synthetic.make_names_task`), test names never seen in
training, and reports ``names_copied``, the share of test outputs that end in their name exactly: the
test bed of the copy mechanism (``--recipe configs/copy_names.yaml``, ``model.pointer_generator``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tformer.errors import TformerError

if TYPE_CHECKING:
    from tformer.translator import Translator


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. train.max_steps=600")
    p.add_argument("--run-dir", default=None,
                   help="where to write the run (default: runs/demo, or runs/demo-N if taken)")
    p.add_argument("--train-size", type=int, default=30000, help="training pairs to generate")
    p.add_argument("--test-size", type=int, default=1000, help="held-out test numbers")
    p.add_argument("--beam", type=int, default=4, help="beam size for the test translations")
    p.add_argument("--seed", type=int, default=1, help="seed of the data and the run")
    p.add_argument("--task", choices=("numbers", "names"), default="numbers",
                   help="numbers (default), or numbers with a name to copy (the copy mechanism's test bed)")
    p.add_argument("--recipe", default=None, help="a recipe YAML instead of the built-in demo recipe")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")


def _free_run_dir(base: str) -> Path:
    p, n = Path(base), 2
    while p.exists() and any(p.iterdir()):
        p, n = Path(f"{base}-{n}"), n + 1
    return p


def run(args: argparse.Namespace) -> int:
    from tformer.tasks import run_training
    from tformer.translator import Translator

    if args.train_size < 100 or args.test_size < 1:
        raise TformerError("--train-size must be >= 100 and --test-size >= 1")
    run_dir = Path(args.run_dir) if args.run_dir else _free_run_dir("runs/demo")
    data_dir = run_dir / "data"
    task = _write_data(args, data_dir)
    cfg = _recipe(args, run_dir, data_dir)
    t0 = time.perf_counter()
    summary = run_training(cfg, show_progress=False if args.no_progress else None)
    train_seconds = time.perf_counter() - t0

    translator = Translator.from_pretrained(run_dir)
    test = task["test"]
    t1 = time.perf_counter()
    hyps = translator.translate([s for s, _ in test], beam_size=args.beam)
    decode_seconds = time.perf_counter() - t1
    for (src, ref), hyp in list(zip(test, hyps, strict=True))[:8]:
        mark = "ok " if hyp == ref else "ERR"
        print(f"{mark} {src}  ->  {hyp}" + ("" if hyp == ref else f"   (expected {ref})"))
    picture = _draw_cross_attention(translator, test[0][0], run_dir / "cross_attention.png", args.beam)
    if picture:
        print(f"cross-attention of {test[0][0]!r}: {picture}")
    result = {**_scores(hyps, [t for _, t in test], names=args.task == "names"),
              "train_seconds": round(train_seconds, 1), "decode_seconds": round(decode_seconds, 1),
              "steps": summary["steps"], "run_dir": str(run_dir), "cross_attention": picture}
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


def _write_data(args: argparse.Namespace, data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Generate the task's train / valid / test pairs and write them as data_dir/{split}.en and .de."""
    from tformer.console import log
    from tformer.data.synthetic import make_names_task, make_number_task, write_parallel

    data_dir.mkdir(parents=True, exist_ok=True)
    if args.task == "names":
        task = make_names_task(args.train_size, 500, args.test_size, seed=args.seed)
    else:
        task = make_number_task(args.train_size, 500, args.test_size, seed=args.seed, balanced_digits=True)
    for split, pairs in task.items():
        write_parallel(pairs, data_dir / f"{split}.en", data_dir / f"{split}.de")
    log(f"demo: {len(task['train'])} training pairs, e.g. {task['train'][0][0]!r} -> {task['train'][0][1]!r}")
    return task


def _recipe(args: argparse.Namespace, run_dir: Path, data_dir: Path):
    """The run config: the built-in recipe (``tformer/recipes/demo.yaml``) or ``--recipe``, with the run
    directory, the data and the seed filled in, then the user's overrides."""
    from tformer.tasks import load_run_config

    recipe = resources.files("tformer.recipes").joinpath("demo.yaml") if args.recipe is None else Path(args.recipe)
    if args.recipe is not None and not recipe.is_file():
        raise TformerError(f"--recipe {args.recipe}: no such file")
    with resources.as_file(recipe) as path:
        return load_run_config(path, [f"run_dir={run_dir}", f"data.data_dir={data_dir}", f"seed={args.seed}",
                                      *args.overrides])


def _scores(hyps: list[str], refs: list[str], names: bool) -> dict[str, Any]:
    """Exact matches, BLEU and chrF on characters (and, for the names task, the share of names copied)."""
    from tformer.evaluation.bleu import score

    scores = score(hyps, refs, tokenize="char")
    pairs = list(zip(hyps, refs, strict=True))
    copied = sum(h.split(" ")[-1] == r.split(" ")[-1] for h, r in pairs) / len(refs)
    return {"exact_match": round(sum(h == r for h, r in pairs) / len(refs), 4),
            **({"names_copied": round(copied, 4)} if names else {}),
            "bleu": scores["bleu"], "chrf": scores["chrf"], "bleu_signature": scores["bleu_signature"],
            "test_sentences": len(refs)}


def _draw_cross_attention(translator: Translator, text: str, path: Path, beam_size: int) -> str | None:
    """Save the cross-attention picture of ``text`` (all heads of the last layer); None without matplotlib."""
    from tformer.console import log

    try:
        from tformer.viz import plot_attention, save_figure
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "matplotlib":
            raise
        log(f"no cross-attention picture: {e}")
        return None
    att = translator.attention(text, beam_size=beam_size)
    return str(save_figure(plot_attention(att, "cross", layer=None, head="grid"), path))
