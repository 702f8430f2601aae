"""What a Vision Transformer looks at: the [class] token's attention over the image patches.

One panel shows the image; then one panel per layer shows how much the [class] token's query takes
from each patch (the mean over heads, laid out as the patch grid, :func:`tformer.models.vit.model.cls_attention_maps`),
and the last panel shows the attention rollout through all layers (Abnar and Zuidema, 2020; ViT's Fig. 6,
:func:`tformer.models.vit.model.attention_rollout`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from tformer.viz.figure import new_figure, set_title


def plot_patch_attention(image: Tensor, layer_maps: Tensor, rollout: Tensor, title: str) -> Figure:
    """image (C, H, W) in [0, 1]; layer_maps (L, G, G), one map per layer; rollout (G, G)."""
    n = layer_maps.shape[0] + 2
    fig = new_figure(1.6 * n, 2.2)
    axes = fig.subplots(1, n)
    img = image.detach().float().cpu().numpy()
    axes[0].imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)), cmap="gray_r", vmin=0, vmax=1)
    axes[0].set_title("image", fontsize=8)
    panels = [(f"layer {i + 1}", m) for i, m in enumerate(layer_maps)] + [("rollout", rollout)]
    for ax, (name, m) in zip(axes[1:], panels, strict=True):
        ax.imshow(m.detach().float().cpu().numpy(), cmap="viridis", vmin=0)
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    set_title(fig, title)
    return fig
