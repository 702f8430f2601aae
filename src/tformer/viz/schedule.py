"""The learning-rate schedule of §5.3 (Eq. 3), as :func:`tformer.training.schedule.noam_lr` computes it.

    lrate = scale · d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)             (Eq. 3)

Linear warm-up to the peak scale / sqrt(d_model · warmup_steps) at step warmup_steps, then decay
with the inverse square root of the step. A run's logged learning rates can be drawn on top.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from tformer.errors import TformerError
from tformer.training.schedule import noam_lr
from tformer.viz.figure import new_figure


def plot_schedule(d_model: int, warmup_steps: int, scale: float = 1.0, steps: int | None = None,
                  logged: Sequence[tuple[int, float]] = ()) -> Figure:
    """Eq. 3 over steps 1 .. ``steps``, its peak marked.

    Args:
        d_model, warmup_steps, scale: the schedule's parameters (``train.lr_scale`` is ``scale``).
        steps: the last step drawn; None = 5 x warmup_steps.
        logged: (update number, learning rate) pairs to draw as points, e.g. from a run's metrics.jsonl.

    Raises:
        TformerError: a parameter is not positive.
    """
    steps = 5 * warmup_steps if steps is None else steps
    if min(d_model, warmup_steps, steps) < 1 or scale <= 0:
        raise TformerError("d_model, warmup_steps and steps must be >= 1 and the scale positive")
    x = list(range(1, steps + 1))
    y = [noam_lr(s, d_model, warmup_steps, scale) for s in x]
    fig = new_figure(8.0, 4.8)
    ax = fig.subplots()
    ax.plot(x, y, color="#2b6cb0", lw=2, label="Eq. 3")
    peak = noam_lr(warmup_steps, d_model, warmup_steps, scale)
    if warmup_steps <= steps:
        ax.axvline(warmup_steps, color="grey", ls=":", lw=1)
        ax.annotate(f"peak {peak:.3g} at step {warmup_steps:,}\n= scale / sqrt(d_model · warmup)",
                    (warmup_steps, peak), xytext=(0.42, 0.96), textcoords="axes fraction", va="top", fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "grey"})
    if logged:
        ax.plot([s for s, _ in logged], [lr for _, lr in logged], "o", ms=4, color="#dd6b20",
                label="logged by the run (metrics.jsonl)")
    ax.set_xlim(0, steps * 1.02)
    ax.set_ylim(0, peak * 1.15)
    ax.set_xlabel("training step (optimizer update)")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title(r"$lrate = scale \cdot d_{model}^{-0.5} \cdot \min(step^{-0.5},\ step \cdot warmup^{-1.5})$",
                 fontsize=10)
    fig.suptitle(f"Learning-rate schedule (Eq. 3, §5.3): d_model = {d_model}, warmup_steps = {warmup_steps:,}, "
                 f"scale = {scale:g}", fontsize=11)
    return fig
