"""The worked example of docs/architecture.md, "Adding a model family": a family is a config, a model built from
the parts in :mod:`tformer.nn`, and one registry entry; nothing else in the toolkit changes.

(The example of "Adding an attention algorithm" is ``tests/unit/test_registries.py::
test_a_new_algorithm_is_one_class_and_one_registration``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tformer.config import Config
from tformer.io.pretrained import Pretrained
from tformer.models import registry
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import EncoderLayer
from tformer.nn.masks import padding_mask


# ---- models/bag/config.py ------------------------------------------------------------------------
@dataclass(frozen=True)
class BagConfig(Config):
    """A sentence classifier: one self-attention layer, then the mean of the real positions, then logits."""

    vocab_size: int
    num_classes: int = 3
    d_model: int = 16
    num_heads: int = 2
    d_ff: int = 32
    dropout: float = 0.0
    pad_id: int = 0

    def __post_init__(self) -> None:
        self.check_positive("vocab_size", "num_classes", "d_model", "d_ff")
        self.check_dropout("dropout")


# ---- models/bag/model.py -------------------------------------------------------------------------
class BagClassifier(Pretrained, nn.Module):
    """Token ids (B, T) -> class logits (B, C); built from the paper's parts (§3.1, §3.2.2, Eq. 2)."""

    config_class = BagConfig

    def __init__(self, cfg: BagConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.layer = EncoderLayer(
            MultiHeadAttention(cfg.d_model, cfg.num_heads),
            PositionwiseFeedForward(cfg.d_model, cfg.d_ff, "relu", 0.0),
            self_attn_norm=nn.LayerNorm(cfg.d_model), ffn_norm=nn.LayerNorm(cfg.d_model),
            dropout=cfg.dropout, pre_norm=False,
        )
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        mask = padding_mask(ids, self.cfg.pad_id)  # (B, 1, 1, T)
        h, _ = self.layer(self.embed(ids), mask)  # (B, T, D)
        real = mask[:, 0, 0, :, None].to(h.dtype)  # (B, T, 1)
        return self.head((h * real).sum(1) / real.sum(1))  # (B, C)


# ---- the one registry entry ----------------------------------------------------------------------
def test_a_new_family_is_a_config_a_model_of_parts_and_one_registry_entry(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.ARCHITECTURES, "BagClassifier", BagClassifier)
    torch.manual_seed(0)
    model = BagClassifier(BagConfig(vocab_size=20)).eval()
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    model.save_pretrained(tmp_path / "bag")

    loaded = registry.load_pretrained(tmp_path / "bag")  # what Translator, average, export, serve, plot call

    assert type(loaded) is BagClassifier and loaded.cfg == model.cfg
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
        padded = torch.tensor([[5, 6, 7, 0, 0, 0]])
        torch.testing.assert_close(model(padded), model(ids[:1]))  # padding never leaks into the mean
