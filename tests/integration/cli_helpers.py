"""Helpers for the CLI tests: run the real command's ``main()`` in this process, as the installed ``tformer``
script does; run it in processes of its own (to be signalled or killed, or as the ranks of a data-parallel
run); write a tiny recipe.

A fresh Python process costs 3-5 s of start-up before any work (importing torch, tformer, and torch._dynamo
the first time an optimizer is made), so:

* :func:`tformer_cli` / :func:`run_main` call ``main()`` in this process, with sys.stdin, sys.stdout and
  sys.stderr swapped for stand-ins of pipes, and Python's default warning filters;
* :func:`tformer_forked` / :func:`tformer_ranks` start real processes (their own signals, exit status, files,
  process group member of a Gloo run), forked from multiprocessing's fork server, which has imported all that
  once per session;
* :func:`tformer_subprocess` runs ``python -m tformer.cli.main`` where the fresh interpreter itself is what a
  test checks (test_cli_plot.py's one test of the installed command); test_distributed.py's signal test runs
  ``torchrun``, which starts fresh ranks.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

# Python's own warning filters (python -W unset, not in development mode): what a fresh `tformer` process shows
_DEFAULT_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, None),
                    ("ignore", PendingDeprecationWarning, None), ("ignore", ImportWarning, None),
                    ("ignore", ResourceWarning, None)]


def _text_stream(data: bytes = b"") -> io.TextIOWrapper:
    """A text stream over bytes, with .buffer, as a pipe's sys.stdin / sys.stdout is (isatty() is False)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict", write_through=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_main(args, *, stdin: bytes = b"", cwd=None) -> subprocess.CompletedProcess:
    """``tformer ARGS`` through ``tformer.cli.main.main`` in this process: (returncode, stdout, stderr) as bytes
    decoded leniently, with what a process would show. An exception escaping main() is printed as a traceback
    with status 1, as the interpreter does; SystemExit (argparse) gives its code."""
    from tformer.cli.main import main

    args = [str(a) for a in args]
    streams = {"stdin": _text_stream(stdin), "stdout": _text_stream(), "stderr": _text_stream()}
    saved = {name: getattr(sys, name) for name in streams}
    old_cwd = os.getcwd()
    try:
        for name, stream in streams.items():
            setattr(sys, name, stream)
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in reversed(_DEFAULT_FILTERS):
                warnings.filterwarnings(action, category=category, module=module or "")
            warnings.showwarning = _show_warning
            try:
                code = main(args)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except Exception:  # what the interpreter would print
                traceback.print_exc(file=sys.stderr)
                code = 1
    finally:
        for name, stream in saved.items():
            setattr(sys, name, stream)
        os.chdir(old_cwd)
    out, err = (streams[n].buffer.getvalue().decode("utf-8", "replace") for n in ("stdout", "stderr"))
    return subprocess.CompletedProcess(["tformer", *args], code, out, err)


def tformer_cli(*args, cwd=None, input: str | None = None) -> subprocess.CompletedProcess:
    """``tformer ARGS`` in this process (see :func:`run_main`), text in and out like ``subprocess.run(text=True)``:
    line endings of the output read as ``\\n``."""
    r = run_main(args, stdin=(input or "").encode("utf-8"), cwd=cwd)
    universal = (r.stdout.replace("\r\n", "\n").replace("\r", "\n"), r.stderr.replace("\r\n", "\n").replace("\r", "\n"))
    return subprocess.CompletedProcess(r.args, r.returncode, *universal)


def tformer_subprocess(*args, cwd=None, input=None, env=None) -> subprocess.CompletedProcess:
    """``python -m tformer.cli.main ARGS`` in a fresh process, for the tests of the process itself."""
    return subprocess.run([sys.executable, "-m", "tformer.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, input=input, timeout=900, env=env)


# ---- processes forked from a server that has imported torch and tformer ----------------------------------------
# What the processes import before they are forked (all that `tformer train` needs)
PRELOAD = ["torch", "torch._dynamo", "torch.distributed", "tformer.cli.main", "tformer.cli.train", "tformer.tasks",
           "tformer.training", "cli_helpers"]


def _forkserver() -> multiprocessing.context.BaseContext:
    """multiprocessing's fork server, started (once per session) with PRELOAD imported: a single-threaded
    process that has run no torch operation, so its forks are safe and start at once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def start_fork_server() -> None:
    """Start the fork server now (it imports for a few seconds while the caller does other work)."""
    _forkserver()


def _child(argv: list[str], env: dict[str, str], out: str, err: str, threads: int, float64: bool, before) -> None:
    """In the forked process: `tformer ARGV` with ``env`` added to the environment; fds 1 and 2 go to files."""
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    import torch

    from tformer.cli.main import main

    torch.set_num_threads(threads)
    if float64:
        torch.set_default_dtype(torch.float64)
    if before is not None:
        before[0](*before[1:])
    sys.exit(main(argv))


class Forked:
    """``tformer ARGS`` in a process of its own, forked from the fork server (:func:`tformer_forked`)."""

    def __init__(self, ctx, args, env: dict[str, str], threads: int, float64: bool, before) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.out, self.err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        self.process = ctx.Process(target=_child, args=([str(a) for a in args], env, str(self.out), str(self.err),
                                                        threads, float64, before), daemon=True)
        self.process.start()
        self.pid = self.process.pid

    def poll(self) -> int | None:
        """The exit status (-N: killed by signal N), or None while it runs."""
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float = 300) -> subprocess.CompletedProcess:
        """Wait for the end (killed after ``timeout`` s, which fails); (exit status, stdout, stderr)."""
        self.process.join(timeout)
        hung = self.process.exitcode is None
        if hung:
            self.kill()
            self.process.join()
        r = subprocess.CompletedProcess(["tformer"], self.process.exitcode, self.out.read_text(),
                                        self.err.read_text())
        self._tmp.cleanup()
        assert not hung, f"still running after {timeout} s: {r.stderr[-3000:]}"
        return r


def tformer_forked(*args, env: dict[str, str] | None = None, threads: int | None = None, float64: bool = False,
                   before: tuple | None = None) -> Forked:
    """Start ``tformer ARGS`` as a process forked from the fork server: a real process (signals, exit status,
    its own files) that starts at once. ``threads``: torch's (default: this process's number), ``float64``:
    torch's default dtype is float64; ``before``: (function, *args) called first in the process (a module-level
    function, which the process imports by name)."""
    import torch

    return Forked(_forkserver(), args, env or {}, threads or torch.get_num_threads(), float64, before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tformer_ranks(*args, processes: int = 2, float64: bool = False, timeout: float = 300,
                  ) -> subprocess.CompletedProcess:
    """``tformer ARGS`` as ``processes`` ranks of a data-parallel run: forked processes with one torch thread
    each and the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which is what
    ``torchrun --nproc_per_node=N --no-python tformer ARGS`` runs, without torchrun's own start-up. stdout and
    stderr are the ranks' in rank order; the exit status is the first non-zero one."""
    common = {"WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    ranks = [tformer_forked(*args, env={**common, "RANK": str(rank), "LOCAL_RANK": str(rank)}, threads=1,
                            float64=float64) for rank in range(processes)]
    results = [rank.wait(timeout) for rank in ranks]
    code = next((r.returncode for r in results if r.returncode), 0)
    return subprocess.CompletedProcess(["tformer", *map(str, args)], code, "".join(r.stdout for r in results),
                                       "".join(r.stderr for r in results))


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's number of CPU threads set for a block: runs in this process that must compute as forked ones do,
    or that train while the fork server imports (2 threads on 2 busy cores wait on each other)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def default_dtype(dtype):
    """torch's default dtype set for a block (the float64 runs of the distributed tests)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def write_recipe(d, run_dir, max_steps=60):
    cfg = d / f"tiny-{run_dir.name}.yaml"
    cfg.write_text(f"""
run_dir: {run_dir}
seed: 7
data:
  data_dir: {d}
  train_src: train.en
  train_tgt: train.de.gz
  valid_src: valid.en
  valid_tgt: valid.de
  vocab_size: 60
model:
  preset: tiny
  dropout: 0.0
train:
  max_tokens: 600
  max_steps: {max_steps}
  warmup_steps: 20
  eval_every: 30
  bleu_samples: 10
  log_every: 10
  keep_checkpoints: 3
""")
    return cfg
