"""Tiny summarization data for the tests: package descriptions whose synopsis is a phrase of the first sentence
(copyable), made from a seeded generator."""

from __future__ import annotations

import random
from pathlib import Path

NAMES = ["zorp", "blix", "quanto", "fremd", "mulk", "tarvo", "gesh", "plinth", "vomo", "krell", "daxi", "unto"]
ADJECTIVES = ["fast", "small", "secure", "simple", "graphical", "portable"]
NOUNS = ["editor", "library", "server", "parser", "viewer", "compiler"]
THINGS = ["images", "music", "mail", "fonts", "maps", "logs", "games", "notes"]


def description(rng: random.Random) -> tuple[str, str]:
    """A long description and its synopsis: the synopsis is words of the first sentence, which says more."""
    name = rng.choice(NAMES) + rng.choice(NAMES)
    adj, noun, thing = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(THINGS)
    other = rng.choice(THINGS)
    text = (f"{name} is a {adj} {noun} for {thing} written with care. It also reads {other} and more. "
            f"This package contains the {noun}.")
    return text, f"{adj} {noun} for {thing}"


def write_split(d: Path, split: str, n: int, rng: random.Random) -> None:
    pairs = [description(rng) for _ in range(n)]
    (d / f"{split}.src").write_text("".join(f"{s}\n" for s, _ in pairs))
    (d / f"{split}.tgt").write_text("".join(f"{t}\n" for _, t in pairs))
