"""The search tree of beam search for one sentence (§6.1: beam size 4, length penalty alpha = 0.6).

At every step each of the K live hypotheses is extended by every token; of all these candidates
the 2K most probable are drawn, best at the top, with the live hypothesis each one extends:

    kept      one of the K best that does not end: a live hypothesis of the next step (blue)
    finished  ended with EOS among the K best: a completed hypothesis, ranked by
              score = log P / lp, lp = ((5 + length) / 6)^alpha (green)
    pruned    not among the K best (grey)

The translation the search returns is drawn in red. The record comes from the ``trace`` of
:func:`tformer.generation.beam.beam_search_nbest`, the same search that ``Translator.translate`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tformer.errors import TformerError
from tformer.generation import Feature, GenerationOptions
from tformer.generation.beam import BeamStep, beam_search_nbest, length_penalty
from tformer.translator import Translator
from tformer.viz.figure import new_figure, set_title

_COLORS = {"kept": "#2b6cb0", "finished": "#2f855a", "pruned": "#a0aec0"}
_BEST = "#c53030"


@dataclass(frozen=True)
class BeamNode:
    """One hypothesis of the tree: its parent's tokens plus ``token``."""

    step: int  # output position of ``token``; the root (BOS) is step -1
    rank: int  # place among the step's candidates, 0 = most probable
    token: str
    logprob: float  # log P of the whole hypothesis
    status: str  # "root", "kept", "finished" or "pruned"
    parent: int | None  # index of the parent node; None for the root
    score: float | None = None  # logprob / lp for finished hypotheses


@dataclass
class BeamTree:
    """The tree of one sentence's beam search; ``best`` holds the node indices of the returned translation."""

    source: str
    translation: str
    beam_size: int
    alpha: float
    nodes: list[BeamNode] = field(default_factory=list)
    best: list[int] = field(default_factory=list)


def beam_tree(translator: Translator, text: str, beam_size: int = 4, length_penalty_alpha: float = 0.6,
              max_len: int | None = None) -> BeamTree:
    """Run beam search on one sentence with a trace and turn the trace into a tree.

    Args:
        translator: the model and tokenizers.
        text: one sentence.
        beam_size: K >= 2 (beam 1 is greedy search, which has no tree).
        length_penalty_alpha: alpha of the length penalty.
        max_len: the most output tokens; None = the source length + 50 (§6.1), as ``translate`` does.

    Raises:
        TformerError: a model without beam search, an empty sentence, a beam size below 2 or a max_len below 1.
    """
    translator.capabilities.require(Feature.BEAM, what="the beam tree")
    if not text.strip():
        raise TformerError("the beam tree needs a non-empty sentence")
    if beam_size < 2:
        raise TformerError(f"the beam tree needs a beam size of 2 or more, got {beam_size} (1 is greedy search)")
    GenerationOptions(beam_size=beam_size, length_penalty=length_penalty_alpha, max_len=max_len)  # checks them
    model, vocabs = translator.model, translator.vocabs
    cfg = model.cfg
    ids = vocabs.src.encode(text)[: cfg.max_len - 1] + [cfg.eos_id]
    src = torch.tensor([ids], device=translator.device)  # (1, S)
    limit = min(len(ids) + 50 if max_len is None else max_len, cfg.max_len)
    trace: list[BeamStep] = []
    (hyps,) = beam_search_nbest(model, src, beam_size=beam_size, max_len=limit,
                                length_penalty_alpha=length_penalty_alpha, trace=trace)
    tree = BeamTree(text, vocabs.tgt.decode(list(hyps[0].tokens)), beam_size, length_penalty_alpha)
    tree.nodes.append(BeamNode(-1, 0, vocabs.tgt.id_to_token(cfg.bos_id), 0.0, "root", None))
    live = [0] * beam_size  # node of each live beam; at step 0 every beam is the root
    for record in trace:
        row = record.sentences.index(0)
        kept = []
        for c in range(record.token.shape[1]):
            logprob = float(record.logprob[row, c])
            if logprob == float("-inf"):
                continue
            finished, is_kept = bool(record.finished[row, c]), bool(record.kept[row, c])
            status = "finished" if finished else "kept" if is_kept else "pruned"
            score = logprob / length_penalty(record.step + 1, length_penalty_alpha) if finished else None
            tree.nodes.append(BeamNode(record.step, c, vocabs.tgt.id_to_token(int(record.token[row, c])), logprob,
                                       status, live[int(record.parent[row, c])], score))
            if is_kept:
                kept.append(len(tree.nodes) - 1)
        live = kept
    tree.best = _path(tree, hyps[0].tokens, vocabs.tgt.id_to_token)
    return tree


def _path(tree: BeamTree, tokens: tuple[int, ...], id_to_token) -> list[int]:
    """Node indices from the root to the hypothesis with ``tokens`` (finished, or kept at its last step when cut)."""
    want = [id_to_token(i) for i in tokens]
    path = [0]
    for t, token in enumerate(want):
        last = t == len(want) - 1
        options = [i for i, n in enumerate(tree.nodes) if n.parent == path[-1] and n.step == t and n.token == token
                   and (n.status == "kept" or (last and n.status == "finished"))]
        if not options:
            raise TformerError("the beam trace does not contain the returned hypothesis")  # a bug, not a user error
        path.append(options[0])  # a (parent, token) pair is one candidate
    return path


def plot_beam_tree(tree: BeamTree) -> Figure:
    """Steps left to right, each step's 2K best candidates top to bottom, an edge from each to its parent.

    Each node shows its token and log P; finished ones also their length-normalised score.
    """
    steps = max(n.step for n in tree.nodes) + 2  # columns, the root included
    rows = 2 * tree.beam_size
    fig = new_figure(1.2 + 1.45 * steps, 1.6 + 0.62 * rows)
    ax = fig.subplots()
    best = set(tree.best)
    for i, n in enumerate(tree.nodes):
        if n.parent is None:
            continue
        p = tree.nodes[n.parent]
        on_best = i in best and n.parent in best
        ax.plot([p.step, n.step], [p.rank, n.rank], color=_BEST if on_best else _COLORS[n.status],
                lw=2.2 if on_best else 0.8, alpha=1.0 if on_best or n.status != "pruned" else 0.6,
                zorder=2 if on_best else 1)
    for i, n in enumerate(tree.nodes):
        color = "black" if n.status == "root" else _COLORS[n.status]
        label = n.token if n.status == "root" else f"{n.token}\n{n.logprob:.2f}"
        if n.score is not None:
            label += f" → {n.score:.2f}"
        ax.text(n.step, n.rank, label, ha="center", va="center", fontsize=7, parse_math=False, zorder=3,
                color="black" if n.status != "pruned" else "#4a5568",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": _BEST if i in best else color,
                      "lw": 1.6 if i in best else 0.8})
    ax.set_xlim(-1.6, steps - 1.4)
    ax.set_ylim(rows - 0.4, -0.6)
    ax.set_xticks(range(-1, steps - 1), labels=["BOS"] + [str(t + 1) for t in range(steps - 1)])
    ax.set_yticks(range(rows), labels=[str(r + 1) for r in range(rows)])
    ax.set_xlabel("output position (step)")
    ax.set_ylabel(f"rank among the step's {rows} best candidates")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in
               (("kept: live in the next step", _COLORS["kept"]),
                ("finished: ended with EOS (log P → log P / lp)", _COLORS["finished"]),
                ("pruned: not among the best K", _COLORS["pruned"]),
                ("the returned translation", _BEST))]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    set_title(fig, f"Beam search (§6.1): beam size {tree.beam_size}, length penalty alpha {tree.alpha:g}",
              f"source: {tree.source!r}", f"output: {tree.translation!r}")
    return fig
