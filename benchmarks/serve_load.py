"""A bounded load test of `tformer serve` on loopback: requests/s, p50/p99 latency, non-2xx answers.

    python benchmarks/serve_load.py [RUN_DIR] [--requests 200] [--clients 8] [--beam 4] [--texts 1]

Starts two `tformer serve RUN_DIR --port 0` servers on 127.0.0.1 in subprocesses, one batching requests (the
default) and one with `--max-batch-texts 1` (every request its own model call), and sends each the same fixed
number of POST /translate requests from several concurrent clients (one keep-alive connection each), in
interleaved rounds (the machine is shared and noisy); then stops them and prints one JSON object: per server,
requests/s (median over rounds), p50/p99 latency (over all requests), non-2xx answers and the model calls made.
Without RUN_DIR it first trains a tiny run (the test suite's recipe, about 20 s on 2 cores) in a temporary
folder. Traffic goes to 127.0.0.1 only and every request has a timeout, so the script always stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tformer.data.synthetic import make_number_task, write_parallel

TINY_RECIPE = """
run_dir: {run_dir}
task: {{name: translation, bleu_samples: 10}}
seed: 7
data: {{data_dir: {data}, train_src: train.en, train_tgt: train.de, valid_src: valid.en, valid_tgt: valid.de,
        vocab_size: 60}}
model: {{preset: tiny, dropout: 0.0}}
train: {{max_tokens: 600, max_steps: 60, warmup_steps: 20, eval_every: 60, log_every: 60}}
"""


def train_tiny_run(folder: Path) -> Path:
    """Train the test suite's tiny number-words run into ``folder/run`` with `tformer train`."""
    task = make_number_task(400, 40, 0, max_number=999, seed=3)
    write_parallel(task["train"], folder / "train.en", folder / "train.de")
    write_parallel(task["valid"], folder / "valid.en", folder / "valid.de")
    recipe = folder / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(run_dir=folder / "run", data=folder))
    subprocess.run([sys.executable, "-m", "tformer.cli.main", "train", str(recipe), "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return folder / "run"


class Server:
    """`tformer serve RUN_DIR --port 0` on 127.0.0.1 in a subprocess, as a context manager."""

    def __init__(self, run_dir: Path, extra: list[str], log: Path) -> None:
        self.args = [sys.executable, "-m", "tformer.cli.main", "serve", str(run_dir), "--port", "0",
                     "--log-level", "warning", *extra]
        self.log = log
        self.port = 0

    def __enter__(self) -> Server:
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while not self.port:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"tformer serve did not start: {self.log.read_text()}")
            for line in self.log.read_text().splitlines():
                if line.startswith("tformer: serving ") and " at http://127.0.0.1:" in line:
                    self.port = int(line.rsplit(":", 1)[1].split("/")[0])
            time.sleep(0.1)
        while True:
            try:
                get(self.port, "/health")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def load(port: int, bodies: list[bytes], clients: int) -> tuple[float, list[float], list[int]]:
    """Send every body once from ``clients`` threads (keep-alive): wall seconds, latencies, statuses."""
    lock, next_index = threading.Lock(), [0]
    latencies: list[float] = []
    statuses: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(bodies):
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/translate", bodies[i], {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 0  # no answer
            with lock:
                latencies.append(time.perf_counter() - t0)
                statuses.append(status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, statuses


def summary(rounds: list[tuple[float, list[float], list[int]]]) -> dict:
    latencies = sorted(t for _, ts, _ in rounds for t in ts)
    statuses = [s for _, _, ss in rounds for s in ss]
    return {
        "requests_per_s": round(statistics.median(len(ts) / wall for wall, ts, _ in rounds), 2),
        "requests_per_s_rounds": [round(len(ts) / wall, 2) for wall, ts, _ in rounds],
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1),
        "non_2xx": sum(not 200 <= s < 300 for s in statuses),
        "5xx_or_no_answer": sum(s >= 500 or s == 0 for s in statuses),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="?", help="a trained run (default: train a tiny one first)")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--texts", type=int, default=1, help="sentences per request")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds the requests are split into")
    args = p.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.clients <= 64 or not 1 <= args.rounds <= args.requests:
        p.error("--requests must be 1..100000, --clients 1..64 and --rounds 1..requests")
    with tempfile.TemporaryDirectory(prefix="tformer-serve-load-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else train_tiny_run(Path(tmp))
        top = 999_999 if args.run_dir else 999  # the tiny run knows numbers up to 999, the demo's up to 999,999
        sentences = [src for src, _ in make_number_task(0, 0, 500, max_number=top, seed=11)["test"]]
        bodies = [json.dumps({"texts": [sentences[(i * args.texts + k) % len(sentences)] for k in range(args.texts)],
                              "beam_size": args.beam}).encode() for i in range(args.requests)]
        modes = {"batched": [], "unbatched": ["--max-batch-texts", "1"]}
        chunks = [bodies[r :: args.rounds] for r in range(args.rounds)]
        results: dict[str, list] = {mode: [] for mode in modes}
        with contextlib.ExitStack() as stack:
            servers = {mode: stack.enter_context(Server(run_dir, extra, Path(tmp) / f"{mode}.log"))
                       for mode, extra in modes.items()}
            before = {}
            for mode, server in servers.items():
                load(server.port, bodies[: min(16, len(bodies))], min(4, args.clients))  # warm-up
                before[mode] = get(server.port, "/health")["batching"]
            for chunk in chunks:
                for mode, server in servers.items():
                    results[mode].append(load(server.port, chunk, args.clients))
            runs = []
            for mode, server in servers.items():
                after = get(server.port, "/health")["batching"]
                runs.append({"mode": mode, **summary(results[mode]),
                             "model_calls": after["model_calls"] - before[mode]["model_calls"],
                             "largest_call": after["largest_call"]})
    print(json.dumps({"benchmark": "serve_load", "run_dir": args.run_dir or "tiny (trained here)",
                      "requests": args.requests, "clients": args.clients, "beam": args.beam,
                      "texts_per_request": args.texts, "rounds": args.rounds, "runs": runs}))


if __name__ == "__main__":
    main()
