"""The ``tformer`` command: a thin dispatcher, one small module per subcommand.

A user error (missing file, bad config key or value, misaligned corpus) prints one line,
``tformer: error: ...``, and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module in tformer.cli with add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "demo": ("demo", "generate a translation task, train, evaluate (no data needed)"),
    "train": ("train", "train a model from a YAML config"),
    "translate": ("translate", "translate text with a trained run (stdin/stdout or files)"),
    "generate": ("generate", "continue prompts with a language-model run (task lm): greedy, beam or sampled"),
    "transcribe": ("transcribe", "transcribe audio files with a speech-recognition run (task asr)"),
    "evaluate": ("evaluate", "translate and score with sacreBLEU (BLEU, chrF), or score a file"),
    "average": ("average", "average the parameters of several checkpoints (§6.1)"),
    "params": ("params", "print parameter counts of the presets against the paper"),
    "plot": ("plot", "draw attention, positional encoding, masks, schedule, curves, a beam tree or speech"),
    "serve": ("serve", "serve the HTTP API and the attention page for a trained run"),
    "distill": ("distill", "translate a training set with a teacher run, then train a student on it"),
    "export": ("export", "write a trained model as ONNX or CTranslate2, with a parity check"),
    "import": ("import_hf", "turn a Hugging Face model folder (Marian, ...) into a tformer run directory"),
    "predict": ("predict", "answer inputs with a trained run of a task with a predictor (classify, vision, ...)"),
}


def build_parser() -> argparse.ArgumentParser:
    from tformer.version import VERSION as __version__

    parser = argparse.ArgumentParser(prog="tformer", description="The Transformer of 'Attention Is All You Need'.")
    parser.add_argument("--version", action="version", version=f"tformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(f"tformer.cli.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tformer.errors import TformerError, os_error_line

    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"tformer.cli.{SUBCOMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except TformerError as e:
        print(f"tformer: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or folder the user named cannot be read or written
        print(f"tformer: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
