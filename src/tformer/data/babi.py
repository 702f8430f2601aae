"""bAbI-style reading comprehension, generated: short stories of people moving between rooms and carrying objects,
with a question each, for extractive question answering.

Weston et al. (2015, "Towards AI-complete question answering: a set of prerequisite toy tasks") built their 20 bAbI
tasks with a simulator of a small world; this is a small simulator in the same spirit (not their data, which is not
installable here). Four of their tasks, by their numbers:

    1  single supporting fact   Mary went to the kitchen. ... Where is Mary?                      kitchen
    2  two supporting facts     John picked up the apple. John went to the garden. Where is the apple?   garden
    6  yes/no questions         Sandra journeyed to the office. ... Is Sandra in the office?       yes
    7  counting                 Daniel grabbed the milk. Daniel got the key. How many objects is Daniel carrying?  two

A story is a run of the world: each sentence is one event (a person moves to a location, picks up an object that
nobody holds, or drops one they hold; an object dropped stays where its holder was), drawn at random among the
events possible in the current state, so that most sentences are distractors for the question asked at the end.
:func:`simulate` replays a story's sentences and is the one place the world's rules live: the generator builds
stories with it and answers questions from its state, and tests check answers against an independent reading.

**Extractive form.** Every answer is a span of the context: the context is :data:`ANSWER_WORDS` (``yes no none one
two three .``) followed by the story, as CoQA's extractive baselines add "yes no unknown" to the passage, so that
the yes/no and counting answers are spans too. ``answer_start`` is the character offset of the answer in
``context``: for tasks 1 and 2 the location word in the supporting sentence that settles it (the last move of the
person, or of the object's holder), for tasks 6 and 7 the answer word at the start.

Splits (:data:`SPLITS`): ``train`` and ``test`` have 1,000 questions per task (bAbI's "1k" setting), ``valid`` 200,
all with stories of 2 to 12 sentences; ``test_long`` has stories of 30 to
60 sentences (longer than a small model's window: the strided reading of long contexts). Each split draws from its
own ``random.Random`` seeded by the seed, split and task, and no (story, question) pair appears in two splits.

Layout of ``root`` (:data:`BABI_PATH`, made by :data:`BABI_COMMAND`, which runs ``python -m tformer.data.babi build
data/babi``)::

    {split}.jsonl   one question a line: {"id", "task", "task_name", "story": [sentences], "question", "answer",
                    "supporting": [sentence indices], "context", "answer_start"}
    README.txt      how it was built: the settings and the questions per split and task
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tformer.data.build_cli import run_build
from tformer.errors import TformerError
from tformer.io.files import atomic_directory

__all__ = ["ANSWER_WORDS", "BABI_COMMAND", "BABI_PATH", "PEOPLE", "PLACES", "SPLITS", "TASKS", "THINGS",
           "BabiConfig", "Question", "World", "build", "generate_split", "read_split", "simulate"]

BABI_PATH = "data/babi"
BABI_COMMAND = "./dev data babi"  # what makes BABI_PATH, under the repository
SPLITS = ("train", "valid", "test", "test_long")
TASKS = {1: "single-supporting-fact", 2: "two-supporting-facts", 6: "yes-no-questions", 7: "counting"}
PEOPLE = ("Mary", "John", "Sandra", "Daniel", "Fred", "Bill", "Julie", "Emily")
PLACES = ("kitchen", "garden", "bathroom", "bedroom", "office", "hallway", "cellar", "balcony")
THINGS = ("football", "apple", "milk", "box", "key", "book")
NUMBERS = ("none", "one", "two", "three")
ANSWER_WORDS = "yes no none one two three ."  # opens every context: the answers that are not story words

# the events, each with the wordings a sentence may take (bAbI's verbs)
MOVES = ("{p} went to the {x}.", "{p} journeyed to the {x}.", "{p} travelled to the {x}.", "{p} moved to the {x}.")
TAKES = ("{p} picked up the {x}.", "{p} grabbed the {x}.", "{p} got the {x}.")
DROPS = ("{p} dropped the {x}.", "{p} put down the {x}.", "{p} left the {x}.")


# ---- the world --------------------------------------------------------------------------------------------------
@dataclass
class World:
    """The state after some sentences: where each person is (and the sentence that put them there), what each
    person holds (and the sentence they took it in), where each dropped object lies (and the drop's sentence)."""

    place: dict[str, tuple[str, int]] = field(default_factory=dict)  # person -> (location, sentence)
    holds: dict[str, dict[str, int]] = field(default_factory=dict)  # person -> {object: sentence taken}
    lies: dict[str, tuple[str, int]] = field(default_factory=dict)  # dropped object -> (location, drop sentence)
    dropped_from: dict[str, int] = field(default_factory=dict)  # dropped object -> the move that put it there

    def holder(self, thing: str) -> str | None:
        return next((p for p, held in self.holds.items() if thing in held), None)

    def apply(self, verb: str, person: str, x: str, index: int) -> None:
        """One event; an impossible one (taking a held object, dropping one not held, taking or dropping nowhere)
        is a ValueError."""
        if verb == "move":
            self.place[person] = (x, index)
            return
        if person not in self.place:
            raise ValueError(f"{person} is nowhere yet and cannot {verb} the {x}")
        if verb == "take":
            if self.holder(x) is not None:
                raise ValueError(f"the {x} is already held")
            self.holds.setdefault(person, {})[x] = index
            self.lies.pop(x, None)
            self.dropped_from.pop(x, None)
        elif verb == "drop":
            if x not in self.holds.get(person, {}):
                raise ValueError(f"{person} does not hold the {x}")
            del self.holds[person][x]
            self.lies[x] = (self.place[person][0], index)
            self.dropped_from[x] = self.place[person][1]
        else:
            raise ValueError(f"unknown event {verb!r}")

    def location_of(self, thing: str) -> tuple[str, list[int]] | None:
        """Where an object is and the sentences that say so: (holder's place, [taken, holder's last move]) or
        (where it was dropped, [the move there, the drop]); None if it was never taken."""
        person = self.holder(thing)
        if person is not None:
            place, moved = self.place[person]
            return place, sorted({self.holds[person][thing], moved})
        if thing in self.lies:
            place, dropped = self.lies[thing]
            return place, sorted({self.dropped_from[thing], dropped})
        return None


def parse(sentence: str) -> tuple[str, str, str]:
    """(verb, person, place or object) of a story sentence in one of the wordings above."""
    for verb, forms in (("move", MOVES), ("take", TAKES), ("drop", DROPS)):
        for form in forms:
            head, tail = form.split("{p}")[1].split("{x}")  # " went to the ", "."
            person, sep, rest = sentence.partition(head)
            if sep and rest.endswith(tail) and person in PEOPLE:
                return verb, person, rest[: -len(tail)]
    raise ValueError(f"not a story sentence: {sentence!r}")


def simulate(story: Sequence[str]) -> World:
    """The world after every sentence of ``story``."""
    world = World()
    for i, sentence in enumerate(story):
        world.apply(*parse(sentence), i)
    return world


# ---- questions ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """One question on one story, in bAbI's terms and in extractive form."""

    id: str
    task: int
    task_name: str
    story: list[str]
    question: str
    answer: str
    supporting: list[int]
    context: str
    answer_start: int


def _event(rng: random.Random, world: World, people: Sequence[str], things: Sequence[str],
           places: Sequence[str]) -> tuple[str, str, str]:
    """A random possible event: mostly moves, takes and drops when they are possible."""
    person = rng.choice(people)
    options = [("move", rng.choice([p for p in places if world.place.get(person, ("",))[0] != p]))]
    if person in world.place:
        free = [t for t in things if world.holder(t) is None]
        if free:
            options.append(("take", rng.choice(free)))
        held = sorted(world.holds.get(person, {}))
        if held:
            options.append(("drop", rng.choice(held)))
    verb, x = rng.choice(options) if things and rng.random() < 0.8 else options[0]  # objects: mostly handled
    return verb, person, x


def _story(rng: random.Random, length: int, with_things: bool) -> tuple[list[str], World]:
    people = rng.sample(PEOPLE, 4)
    places = rng.sample(PLACES, 5)
    things = rng.sample(THINGS, 4) if with_things else []
    world, story = World(), []
    for i in range(length):
        verb, person, x = _event(rng, world, people, things, places)
        world.apply(verb, person, x, i)
        forms = {"move": MOVES, "take": TAKES, "drop": DROPS}[verb]
        story.append(rng.choice(forms).format(p=person, x=x))
    return story, world


def _ask(rng: random.Random, task: int, story: list[str], world: World, count: int = 0
         ) -> tuple[str, str, list[int]] | None:
    """(question, answer, supporting sentences) of ``task`` on this story, or None when it allows none; task 7
    asks about a person who carries ``count`` objects."""
    if task in (1, 6):
        if not world.place:
            return None
        person = rng.choice(sorted(world.place))
        place, moved = world.place[person]
        if task == 1:
            return f"Where is {person}?", place, [moved]
        asked = place if rng.random() < 0.5 else rng.choice([p for p in PLACES if p != place])
        return f"Is {person} in the {asked}?", "yes" if asked == place else "no", [moved]
    if task == 2:
        known = [t for t in THINGS if world.location_of(t) is not None]
        if not known:
            return None
        thing = rng.choice(known)
        place, support = world.location_of(thing)  # type: ignore[misc]
        return f"Where is the {thing}?", place, support
    if task == 7:  # a person who carries ``count`` objects, if there is one
        fits = [p for p in sorted(world.place) if len(world.holds.get(p, {})) == count]
        if not fits:
            return None
        person = rng.choice(fits)
        return f"How many objects is {person} carrying?", NUMBERS[count], sorted(world.holds.get(person, {}).values())
    raise ValueError(f"unknown task {task}")


def extractive(story: list[str], answer: str, supporting: list[int]) -> tuple[str, int]:
    """The context (:data:`ANSWER_WORDS` + the story) and the answer's character offset in it: in the last
    supporting sentence that names it, else among the answer words."""
    context = " ".join([ANSWER_WORDS, *story])
    starts, at = [], len(ANSWER_WORDS) + 1
    for sentence in story:
        starts.append(at)
        at += len(sentence) + 1
    for i in sorted(supporting, reverse=True):
        where = story[i].rfind(f" {answer}.")
        if where >= 0:
            return context, starts[i] + where + 1
    words = ANSWER_WORDS.split()
    if answer not in words:
        raise ValueError(f"answer {answer!r} is neither in a supporting sentence nor an answer word")
    return context, len(" ".join(words[: words.index(answer)])) + (1 if words.index(answer) else 0)


# ---- splits -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BabiConfig:
    """How the splits are drawn: questions per task (``eval_questions`` for valid), story lengths (sentences), the
    seed."""

    seed: int = 1
    train_questions: int = 1000
    eval_questions: int = 200
    test_questions: int = 1000
    long_questions: int = 100
    min_sentences: int = 2
    max_sentences: int = 12
    long_min_sentences: int = 30
    long_max_sentences: int = 60
    tasks: tuple[int, ...] = tuple(TASKS)

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise TformerError(f"unknown bAbI task(s) {unknown}: choose among {sorted(TASKS)}")
        if not 1 <= self.min_sentences <= self.max_sentences or not 1 <= self.long_min_sentences <= \
                self.long_max_sentences:
            raise TformerError("story lengths must satisfy 1 <= min <= max")

    def plan(self, split: str) -> tuple[int, int, int]:
        """(questions per task, fewest sentences, most sentences) of ``split``."""
        if split == "test_long":
            return self.long_questions, self.long_min_sentences, self.long_max_sentences
        count = {"train": self.train_questions, "test": self.test_questions}.get(split, self.eval_questions)
        return count, self.min_sentences, self.max_sentences


def generate_split(cfg: BabiConfig, split: str, seen: set | None = None) -> list[Question]:
    """The questions of ``split``, task by task, none whose (story, question) is in ``seen`` (which grows)."""
    seen = set() if seen is None else seen
    count, low, high = cfg.plan(split)
    out: list[Question] = []
    for task in cfg.tasks:
        rng = random.Random(f"babi-{cfg.seed}-{split}-{task}")
        made = tries = 0
        while made < count:
            tries += 1
            if tries > 100 * count:
                raise TformerError(f"could not draw {count} distinct questions of task {task} for {split}")
            story, world = _story(rng, rng.randint(low, high), with_things=task in (2, 7))
            asked = _ask(rng, task, story, world, count=made % len(NUMBERS))  # counting: every answer as often
            if asked is None:
                continue
            question, answer, supporting = asked
            key = (tuple(story), question)
            if key in seen:
                continue
            seen.add(key)
            context, start = extractive(story, answer, supporting)
            out.append(Question(f"{split}-{task}-{made:05d}", task, TASKS[task], story, question, answer,
                                supporting, context, start))
            made += 1
    return out


def read_split(root: str | Path, split: str) -> list[Question]:
    """A split written by :func:`build`; a missing one is a one-line TformerError naming the command."""
    path = Path(root) / f"{split}.jsonl"
    if not path.is_file():
        raise TformerError(f"bAbI split not found: {path} (make it with {BABI_COMMAND})")
    return [Question(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def build(root: str | Path, cfg: BabiConfig = BabiConfig()) -> dict[str, dict[int, int]]:
    """Write every split and README.txt under ``root`` atomically; returns the questions per split and task."""
    seen: set = set()
    splits = {split: generate_split(cfg, split, seen) for split in SPLITS}
    counts = {s: {t: sum(q.task == t for q in qs) for t in cfg.tasks} for s, qs in splits.items()}
    with atomic_directory(root) as tmp:
        for split, questions in splits.items():
            lines = (json.dumps(asdict(q), ensure_ascii=False) for q in questions)
            (tmp / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(cfg, counts), encoding="utf-8")
    return counts


def _readme(cfg: BabiConfig, counts: dict[str, dict[int, int]]) -> str:
    rows = [f"  {split:<10} " + ", ".join(f"task {t}: {n}" for t, n in per.items()) for split, per in counts.items()]
    return ("bAbI-style stories for extractive question answering, generated by tformer.data.babi\n"
            f"settings: {json.dumps(asdict(cfg))}\n" + "questions:\n" + "\n".join(rows) + "\n")


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tformer.data.babi", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the splits under ROOT")
    b.add_argument("root", nargs="?", default=BABI_PATH)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--train-questions", type=int, default=1000, help="per task (default 1000, bAbI's 1k)")
    args = p.parse_args(list(argv) if argv is not None else None)
    return run_build(lambda: build(args.root, BabiConfig(seed=args.seed, train_questions=args.train_questions)),
                     args.root, lambda counts: json.dumps({"root": str(args.root), "questions": counts}))


if __name__ == "__main__":
    sys.exit(main())
