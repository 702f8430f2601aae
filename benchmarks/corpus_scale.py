"""Corpora at WMT scale: what ``tformer train`` costs on 4.5 million sentence pairs (the size of WMT14 en-de), cold
(tokenizing into the cache), warm (the cache present) and on ``--resume``; against another tformer source tree
(e.g. the code before the cache) at the sizes it copes with.

    python benchmarks/corpus_scale.py generate --pairs 4500000 --out /tmp/tformer-scale/data
    python benchmarks/corpus_scale.py measure --data /tmp/tformer-scale/data --pairs 250000 --mode cold \\
        --work /tmp/tformer-scale/work [--src DIR]
    python benchmarks/corpus_scale.py all --root /tmp/tformer-scale [--old-src DIR] [--new-src DIR]

``generate`` writes ``train.{en,de}`` (and prefixes ``train-<N>.{en,de}`` for smaller sizes) and 3,000 validation
pairs: sentences of ~25 words (log-normal lengths, 1-120 words) drawn from 60,000 made-up words per language with
Zipfian frequencies (s = 1.07; frequent words short), a target ~1.1x as long whose words mostly follow the source's.
Keep it outside the repository.

``measure`` runs ``tformer train`` under torchrun, 2 ranks on the CPU (Gloo), a tiny model, a 32,000-token shared
vocabulary (``--tokenizer``: bpe, or symbols: whole words), 2,048-token batches; after 5 updates it sends SIGTERM (the
run saves a checkpoint and stops, as on Ctrl-C) and prints one ``BENCH_RESULT`` JSON line:

* ``first_update_s``: from the launch to rank 0's log line of the first update (``log_every: 1``);
* ``tokenizer_s`` / ``tokenize_s``: the preprocessing, from rank 0's log (tokenizer training; the corpus);
* per rank: ``peak_rss_mb`` (the kernel's VmHWM: the whole life, preprocessing included) and, polled every
  50 ms, the largest ``anon_mb`` (private memory) and ``rss_mb`` while training (after the first update). A
  memory-mapped corpus's pages are file pages of the page cache, shared by the ranks and dropped under pressure:
  they count in ``rss_mb``, not in ``anon_mb``;
* ``cache_mb``: the size of the cache folder; ``cpu_s``: the CPU time of all processes; ``load_avg``.

Modes: ``cold`` (no cache, a new run), ``warm`` (the cache of an earlier run, a new run), ``resume`` (``--resume`` of
the last run of the same ``--tag`` and size). ``--src`` runs another source tree (its ``src/`` first on PYTHONPATH):
``git archive <commit> src | tar -x -C DIR``; a tree without the cache gets no ``data.cache_dir``.

``all`` generates the corpus if needed and runs, one after another: the machine's matmul rate; this code at 4.5M pairs
(cold, warm, resume) with the word-level tokenizer (half the CPU of BPE, so that the whole set fits in ~25
CPU-minutes of a 2-core machine); a 2,000-pair run (the ranks' memory without a corpus); with ``--bpe-sizes``, this
code with BPE at those sizes (cold); with ``--old-src``, that tree at ``--sizes`` (0.25M and 1M pairs, fresh runs).
It prints every record, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORDS = 60_000
ZIPF_S = 1.07
VALID_PAIRS = 3000
UPDATES = 5  # then SIGTERM: the run saves a checkpoint and stops (no validation), as Ctrl-C does


# ---------------------------------------------------------------------------------------------- the corpus


def lexicon(rng: np.random.Generator, n: int, syllables: list[str]) -> np.ndarray:
    """``n`` distinct made-up words, by frequency rank: rank r gets about 1 + log10(r + 1) syllables."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        k = 1 + int(np.log10(len(words) + 1) * 0.8) + int(rng.integers(0, 2))
        w = "".join(syllables[i] for i in rng.integers(0, len(syllables), k))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return np.array(words, dtype=object)


def generate(pairs: int, out: Path, prefixes: list[int], seed: int = 0) -> None:
    """Write the corpus (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    src_lex = lexicon(rng, WORDS, [c + v for c in cons for v in vows] + list(vows))
    tgt_lex = lexicon(rng, WORDS, [c + v + e for c in cons for v in vows for e in ("", "", "n", "r")] + list(vows))
    cdf = np.cumsum(1.0 / np.arange(1, WORDS + 1) ** ZIPF_S)
    cdf /= cdf[-1]

    def sentences(n: int, chunk: int = 200_000):
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            src_len = np.clip(rng.lognormal(np.log(23), 0.45, m).round(), 1, 120).astype(np.int64)
            tgt_len = np.clip((src_len * rng.uniform(0.9, 1.3, m)).round(), 1, 140).astype(np.int64)
            src_ids = np.searchsorted(cdf, rng.random(int(src_len.sum())))
            follow = np.searchsorted(cdf, rng.random(int(tgt_len.sum())))  # the target's own draws ...
            src_at = np.repeat(np.cumsum(src_len) - src_len, tgt_len) + (
                np.arange(int(tgt_len.sum())) - np.repeat(np.cumsum(tgt_len) - tgt_len, tgt_len)) % np.repeat(
                src_len, tgt_len)
            copy = rng.random(len(follow)) < 0.8  # ... mostly replaced by the translation of a source word
            follow[copy] = src_ids[src_at[copy]]
            for s, t in zip(np.split(src_lex[src_ids], np.cumsum(src_len)[:-1]),
                            np.split(tgt_lex[follow], np.cumsum(tgt_len)[:-1]), strict=True):
                yield " ".join(s).capitalize() + " .", " ".join(t).capitalize() + " ."

    sizes = sorted(p for p in prefixes if p < pairs)
    names = {pairs: "train", **{p: f"train-{p}" for p in sizes}}
    files = {(n, lang): open(out / f"{name}.{lang}", "w", encoding="utf-8")
             for n, name in names.items() for lang in ("en", "de")}
    try:
        for i, (s, t) in enumerate(sentences(pairs)):
            for n in names:
                if i < n:
                    files[n, "en"].write(s + "\n")
                    files[n, "de"].write(t + "\n")
    finally:
        for f in files.values():
            f.close()
    with open(out / "valid.en", "w", encoding="utf-8") as fs, open(out / "valid.de", "w", encoding="utf-8") as ft:
        for s, t in sentences(VALID_PAIRS):
            fs.write(s + "\n")
            ft.write(t + "\n")


# ------------------------------------------------------------------------------------------- one run


def recipe(data: Path, pairs: int, run_dir: Path, cache: Path | None, total_pairs: int, tokenizer: str) -> str:
    name = "train" if pairs == total_pairs else f"train-{pairs}"
    cache_line = f"  cache_dir: {cache}\n" if cache else ""
    return f"""run_dir: {run_dir}
seed: 1
data:
  data_dir: {data}
  train_src: {name}.en
  train_tgt: {name}.de
  valid_src: valid.en
  valid_tgt: valid.de
  vocab_size: 32000
  tokenizer: {tokenizer}
  max_len: 100
{cache_line}model: {{preset: tiny}}
train: {{max_steps: 100000, max_tokens: 2048, warmup_steps: 4000, log_every: 1, eval_every: 100000, device: cpu,
         bleu_samples: 0}}
"""


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) // 1024  # MB
    return out


def _ranks(parent: int) -> dict[int, int]:
    """pid -> RANK of the processes torchrun started."""
    ranks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            ranks[int(entry)] = int(env.get(b"RANK", b"-1"))
        except (OSError, ValueError, IndexError):
            continue
    return ranks


def measure(data: Path, pairs: int, mode: str, work: Path, src: Path | None, total_pairs: int, tag: str,
            tokenizer: str = "bpe") -> dict:
    """One ``tformer train`` under torchrun (see the module docstring); ``resume`` continues the last run of the
    same ``tag`` and size."""
    has_cache = (src / "tformer" / "data" / "binarized.py").is_file() if src else True
    run_dir, cache = work / f"run-{tag}-{pairs}", work / f"cache-{pairs}"
    if mode == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    if mode != "resume":
        shutil.rmtree(run_dir, ignore_errors=True)
    cfg = work / f"{run_dir.name}.yaml"
    work.mkdir(parents=True, exist_ok=True)
    cfg.write_text(recipe(data, pairs, run_dir, cache if has_cache else None, total_pairs, tokenizer))
    extra = ["--resume"] if mode == "resume" else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
           sys.executable, "-m", "tformer.cli.main", "train", str(cfg), *extra, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: killed whole if this driver stops
    try:
        return _watch(proc, t0, pairs, mode, tag, tokenizer, cache if has_cache else None)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _watch(proc: subprocess.Popen, t0: float, pairs: int, mode: str, tag: str, tokenizer: str, cache: Path | None
           ) -> dict:
    """Follow one run: its log lines, its ranks' memory; stop it after UPDATES updates; the record."""
    cpu0 = os.times()
    lines: list[tuple[float, str]] = []
    first, enough = threading.Event(), threading.Event()

    def read() -> None:
        updates = 0
        for line in proc.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip()))
            if re.match(r"step \d+ \| loss", line):
                first.set()
                updates += 1
                if updates == UPDATES:
                    enough.set()
                    proc.send_signal(signal.SIGTERM)  # torchrun passes it on: a checkpoint, then exit 143

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak: dict[int, dict[str, int]] = {}
    while proc.poll() is None:
        for pid, rank in _ranks(proc.pid).items():
            try:
                s = _status(pid)
            except OSError:
                continue
            p = peak.setdefault(rank, {"peak_rss_mb": 0, "peak_anon_mb": 0, "anon_mb": 0, "rss_mb": 0})
            p["peak_rss_mb"] = max(p["peak_rss_mb"], s.get("VmHWM", 0))
            p["peak_anon_mb"] = max(p["peak_anon_mb"], s.get("RssAnon", 0))
            if first.is_set():
                p["anon_mb"] = max(p["anon_mb"], s.get("RssAnon", 0))
                p["rss_mb"] = max(p["rss_mb"], s.get("VmRSS", 0))
        time.sleep(0.05)
    reader.join(timeout=10)
    stdout = proc.stdout.read()
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    text = "\n".join(line for _, line in lines)
    if not enough.is_set():
        return {"code": tag, "pairs": pairs, "mode": mode, "error": text[-2000:]}

    def seconds(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    def at(prefix: str) -> float | None:
        return next((round(t, 2) for t, line in lines if line.startswith(prefix)), None)

    return {"code": tag, "pairs": pairs, "mode": mode, "tokenizer": tokenizer, "first_update_s": at("step "),
            "wall_s": round(wall, 1),
            "tokenizer_s": seconds(r"tokenizer: \w+, vocabulary [\d +]+ \((\d+\.\d+)s\)"),
            "tokenize_s": seconds(r"tokenized \d+ training pairs in (\d+\.\d+)s"),
            "log_at_s": {"tokenizer": at("tokenizer:"), "train_report": at("train: kept"),
                         "training_starts": at("training ")},
            "train_report": next((line for _, line in lines if line.startswith("train: kept")), None),
            "ranks": [{"rank": r, **peak[r]} for r in sorted(peak)],
            "cache_mb": _size_mb(cache) if cache is not None and cache.exists() else None,
            "cpu_s": round(cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system, 1),
            "load_avg": os.getloadavg()[0], "summary": json.loads(stdout.strip().splitlines()[-1]) if stdout else None}


def _size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def emit(record: dict) -> None:
    print("BENCH_RESULT " + json.dumps(record), flush=True)


# ------------------------------------------------------------------------------------------------ all


def matmul_rate() -> dict:
    out = subprocess.run([sys.executable, str(HERE / "matmul.py")], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH_RESULT "))
    return json.loads(line.removeprefix("BENCH_RESULT "))


def run_all(root: Path, total: int, sizes: list[int], old_src: Path | None, new_src: Path | None,
            bpe_sizes: list[int]) -> None:
    data, work = root / "data", root / "work"
    if not (data / "train.en").is_file():
        t0 = time.perf_counter()
        generate(total, data, sizes)
        emit({"part": "generate", "pairs": total, "seconds": round(time.perf_counter() - t0, 1)})
    records = [matmul_rate()]
    emit(records[-1])
    plan = [(new_src, "cache", total, mode, "symbols") for mode in ("cold", "warm", "resume")]
    plan += [(new_src, "cache", 2000, "cold", "symbols")]  # the ranks' memory without a corpus to speak of
    plan += [(new_src, "cache-bpe", n, "cold", "bpe") for n in bpe_sizes]  # the subword tokenizer's rate
    if old_src is not None:
        plan += [(old_src, "before", n, "cold", "symbols") for n in sizes]
    for src, tag, n, mode, tokenizer in plan:
        if n == 2000 and not (data / "train-2000.en").is_file():
            _head(data, 2000)
        records.append(measure(data, n, mode, work, src, total, tag, tokenizer))
        emit(records[-1])
    emit({"part": "summary", "matmul_gflop_s": records[0].get("gflop_s"),
          "runs": [{k: r.get(k) for k in ("code", "pairs", "mode", "tokenizer", "first_update_s", "tokenizer_s",
                                          "tokenize_s", "cache_mb", "load_avg")}
                   | {"peak_rss_mb": [x["peak_rss_mb"] for x in r.get("ranks", [])],
                      "train_rss_mb": [x["rss_mb"] for x in r.get("ranks", [])],
                      "train_anon_mb": [x["anon_mb"] for x in r.get("ranks", [])]} for r in records[1:]]})


def _head(data: Path, n: int) -> None:
    for lang in ("en", "de"):
        with open(data / f"train.{lang}", encoding="utf-8") as f, open(data / f"train-{n}.{lang}", "w") as g:
            for _, line in zip(range(n), f, strict=False):
                g.write(line)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: a run in progress is killed with its ranks
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--pairs", type=int, default=4_500_000)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--prefixes", default="250000,1000000")
    m = sub.add_parser("measure")
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--pairs", type=int, required=True)
    m.add_argument("--total", type=int, default=4_500_000, help="the pairs of train.{en,de} (others: prefixes)")
    m.add_argument("--mode", choices=("cold", "warm", "resume"), required=True)
    m.add_argument("--work", type=Path, required=True)
    m.add_argument("--src", type=Path, help="another tree's src/ (default: the installed tformer)")
    m.add_argument("--tag", default="cache", help="names the run directory (resume continues the same tag)")
    m.add_argument("--tokenizer", default="bpe", help="data.tokenizer: bpe, unigram or symbols (word level)")
    a = sub.add_parser("all")
    a.add_argument("--root", type=Path, default=Path("/tmp/tformer-scale"))
    a.add_argument("--pairs", type=int, default=4_500_000)
    a.add_argument("--sizes", default="250000,1000000", help="the sizes --old-src runs at")
    a.add_argument("--bpe-sizes", default="", help="sizes this code also runs at with BPE, cold (e.g. 250000)")
    a.add_argument("--old-src", type=Path)
    a.add_argument("--new-src", type=Path)
    args = ap.parse_args()
    if args.cmd == "generate":
        generate(args.pairs, args.out, [int(x) for x in args.prefixes.split(",") if x])
    elif args.cmd == "measure":
        emit(measure(args.data, args.pairs, args.mode, args.work, args.src, args.total, args.tag, args.tokenizer))
    else:
        run_all(args.root, args.pairs, [int(x) for x in args.sizes.split(",") if x], args.old_src, args.new_src,
                [int(x) for x in args.bpe_sizes.split(",") if x])


if __name__ == "__main__":
    main()
