"""Pictures of the model and its training (matplotlib; ``pip install 'tformer[viz]'``).

Each ``plot_*`` function takes data and returns a ``matplotlib.figure.Figure``; :func:`save_figure`
writes it as PNG, SVG or PDF (by the suffix), atomically. ``tformer plot ...`` draws the same
pictures from a run directory.

    >>> from tformer import Translator
    >>> from tformer.viz import plot_attention, save_figure
    >>> att = Translator.from_pretrained("runs/demo").attention("three hundred twenty-one")
    >>> save_figure(plot_attention(att, "cross", head="grid"), "cross.png")
"""

try:
    import matplotlib  # noqa: F401
except ModuleNotFoundError as e:  # the CLI turns this into one line and exit status 2
    raise ModuleNotFoundError("tformer's pictures need matplotlib: pip install 'tformer[viz]'",
                              name="matplotlib") from e

from tformer.viz.attention import attention_weights, plot_attention  # noqa: E402
from tformer.viz.beam_tree import BeamNode, BeamTree, beam_tree, plot_beam_tree  # noqa: E402
from tformer.viz.curves import logged_learning_rates, plot_curves, read_metrics  # noqa: E402
from tformer.viz.figure import save_figure  # noqa: E402
from tformer.viz.masks import BatchMasks, batch_masks, plot_masks, sentence_batch  # noqa: E402
from tformer.viz.positional import plot_positional  # noqa: E402
from tformer.viz.schedule import plot_schedule  # noqa: E402

__all__ = [
    "BatchMasks", "BeamNode", "BeamTree", "attention_weights", "batch_masks", "beam_tree", "logged_learning_rates",
    "plot_attention", "plot_beam_tree", "plot_curves", "plot_masks", "plot_positional", "plot_schedule",
    "read_metrics", "save_figure", "sentence_batch",
]
