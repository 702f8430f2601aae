"""``tformer serve RUN_DIR``: the HTTP API and the page for a trained run of any task (FastAPI + uvicorn).

A translation run (or a folder written by ``tformer average``) gets ``/translate`` and the attention page; a run
of another task gets the route its predictor names (``/predict`` or ``/generate``) and a page for its task
(:mod:`tformer.serving.app`). The page opens with the run's first validation input already answered.

Binds 127.0.0.1 by default: the API has no authentication, so bind another address only on a network you
trust. ``--port 0`` picks a free port; the first line on stderr says where the server listens.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from tformer.errors import TformerError
from tformer.serving.limits import Limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument("run_dir", help="a run directory (or a folder written by `tformer average`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--max-texts", type=int, default=d.max_texts,
                   help=f"most sentences a request (default {d.max_texts})")
    p.add_argument("--max-chars", type=int, default=d.max_chars,
                   help=f"most characters a sentence (default {d.max_chars})")
    p.add_argument("--max-context-chars", type=int, default=d.max_context_chars,
                   help=f"most characters a question's context (question answering; default {d.max_context_chars})")
    p.add_argument("--max-beam", type=int, default=d.max_beam, help=f"largest beam size (default {d.max_beam})")
    p.add_argument("--max-attention-tokens", type=int, default=d.max_attention_tokens,
                   help=f"most source tokens for /attention (default {d.max_attention_tokens})")
    p.add_argument("--max-batch-texts", type=int, default=d.max_batch_texts,
                   help=f"most sentences per model call when batching requests (default {d.max_batch_texts}; "
                        "1 = no merging)")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                   help=f"how long a request waits for others to share its model call (default {d.batch_wait_ms})")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level; warning hides the access log (default info)")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; an address in use or not ours is one clear line."""
    if not 0 <= port <= 65535:
        raise TformerError(f"--port must be between 0 and 65535, got {port}")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name such as localhost
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise TformerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


TRANSLATION_TASKS = ("translation", "cmlm")  # served by a Translator; every other task by its predictor


def served(run_dir: str, device: str) -> tuple:
    """What to serve for ``run_dir``, and the sentence the page opens with: a Translator and the run's first
    validation sentence for a translation run or a folder without a config (``tformer average``); the run's
    predictor and None (it has its own example) for a run of another task."""
    from tformer.tasks.predictor import CONFIG_FILE, first_validation_line, open_run, run_task
    from tformer.translator import Translator

    if (Path(run_dir) / CONFIG_FILE).is_file() and run_task(run_dir) not in TRANSLATION_TASKS:
        return open_run(run_dir, device), None
    return Translator.from_pretrained(run_dir, device=device), first_validation_line(run_dir)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from tformer.serving.app import create_app
    except ImportError as e:
        raise TformerError(f"tformer serve needs FastAPI and uvicorn ({e.name} is missing): "
                           "pip install 'tformer[serve]'") from None
    limits = Limits(max_texts=args.max_texts, max_chars=args.max_chars, max_context_chars=args.max_context_chars,
                    max_beam=args.max_beam, max_attention_tokens=args.max_attention_tokens,
                    max_batch_texts=args.max_batch_texts, batch_wait_ms=args.batch_wait_ms)
    name = Path(args.run_dir).resolve().name
    model, example = served(args.run_dir, args.device)
    app = create_app(model, limits, name=name, example=example)  # refuses a model it cannot serve, in one line
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"tformer: serving {name} at http://{url_host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    if not ipaddress.ip_address(host).is_loopback:
        print(f"tformer: warning: {host} is reachable from other machines and the API has no authentication",
              file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
