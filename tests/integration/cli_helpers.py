"""Helpers for the CLI tests: run the real command in a subprocess; write a tiny recipe."""

import subprocess
import sys


def tformer_cli(*args, cwd=None, input=None):
    return subprocess.run([sys.executable, "-m", "tformer.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, input=input, timeout=900)


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
