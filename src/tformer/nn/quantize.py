"""int8 dynamic quantization of the linear layers, for CPU decoding.

Every ``nn.Linear`` (the attention projections W^Q, W^K, W^V, W^O, the FFN's W_1 and W_2 and the
pre-softmax projection) gets int8 weights with one scale per output row; activations are quantized
on the fly per batch. Embeddings, LayerNorm and softmax stay in fp32. The result is for inference
only: it cannot be trained or saved with ``save_pretrained``.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from tformer.nn.linear import Linear


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose linear layers run in int8 (weights) x int8 (activations) on the CPU.

    The original model is left untouched. Tied matrices stay tied in the original; in the copy the
    pre-softmax projection holds its own int8 weights.
    """
    q = copy.deepcopy(model).cpu().eval()
    for module in q.modules():
        if isinstance(module, Linear):  # PyTorch's int8 conversion takes exactly nn.Linear (same parameters)
            module.__class__ = nn.Linear
            module.__dict__.pop("_transposed", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its future move to torchao
        return torch.ao.quantization.quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)
