"""The coverage loss (tformer.nn.coverage) against a written-out loop over decoder steps in float64, by properties,
and inside task summarization's loss (the cross-entropy plus lambda times it, from the last layer's
cross-attention averaged over heads)."""

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.data.batching import collate
from tformer.nn.coverage import coverage_loss, coverage_vectors
from tformer.tasks.summarization import COVERAGE_TERM, SummarizationSettings, SummarizationTask
from tformer.training.label_smoothing import label_smoothed_loss


def loop_coverage_loss(a: torch.Tensor, mask: torch.Tensor) -> float:
    """See et al.'s definition step by step: c_t = sum of the earlier real steps' a, loss_t = sum_i min(a_ti, c_ti)."""
    total = 0.0
    for b in range(a.shape[0]):
        c = [0.0] * a.shape[2]
        for t in range(a.shape[1]):
            if not mask[b, t]:
                continue
            total += sum(min(float(a[b, t, i]), c[i]) for i in range(a.shape[2]))
            c = [c[i] + float(a[b, t, i]) for i in range(a.shape[2])]
    return total


def random_attention(b=3, t=7, s=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, t, s, generator=g, dtype=torch.float64)
    a[1, :, 3:] = 0.0  # a padded source
    a = a / a.sum(-1, keepdim=True)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 5:] = False  # padded targets
    mask[2, 2:] = False
    return a, mask


def test_equals_the_written_out_loop():
    for seed in range(3):
        a, mask = random_attention(seed=seed)
        assert float(coverage_loss(a, mask)) == pytest.approx(loop_coverage_loss(a, mask), rel=1e-12, abs=1e-12)


def test_padded_target_steps_neither_cost_nor_cover():
    a, mask = random_attention()
    c = coverage_vectors(a, mask)
    assert torch.equal(c[:, 0], torch.zeros_like(c[:, 0]))  # c_0 = 0
    a2 = a.clone()
    a2[~mask] = torch.rand_like(a2[~mask])  # whatever the padded steps attend to
    assert float(coverage_loss(a2, mask)) == pytest.approx(float(coverage_loss(a, mask)), rel=1e-12)


def test_attending_once_costs_nothing_and_repeating_costs_one_per_step():
    eye = torch.eye(4, dtype=torch.float64)[None]  # (1, T=4, S=4): step t attends to position t only
    full = torch.ones(1, 4, dtype=torch.bool)
    assert float(coverage_loss(eye, full)) == 0.0
    same = torch.zeros(1, 4, 4, dtype=torch.float64)
    same[..., 2] = 1.0  # every step attends to position 2: each step after the first overlaps fully
    assert float(coverage_loss(same, full)) == 3.0


def test_task_loss_adds_lambda_times_coverage_in_training_only():
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=40, pointer_generator=True, dropout=0.0)
    model = Transformer(cfg).double()
    batch = collate([([5, 6, 7, 8, 9], [6, 7]), ([10, 11, 12], [12, 10, 11, 13])], cfg.pad_id, cfg.bos_id, cfg.eos_id)
    task = SummarizationTask.__new__(SummarizationTask)
    task.settings = SummarizationSettings(coverage=0.5)
    model.train()
    out = task.loss(model, batch, 0.1)
    logits, maps = model(batch.src, batch.tgt_in, need_weights=True)
    plain = label_smoothed_loss(logits, batch.tgt_out, 0.1, cfg.pad_id)
    a = maps.decoder_cross[-1].mean(dim=1)  # (B, T, S) the distribution the pointer copies with
    expected_cov = loop_coverage_loss(a.detach(), batch.tgt_out != cfg.pad_id)
    assert float(out.terms[COVERAGE_TERM]) == pytest.approx(expected_cov, rel=1e-9)
    # the copy layer's log P is float32 (nn/copy.py), so the cross-entropy is compared at float32's precision
    assert float(out.loss.detach()) == pytest.approx(float(plain.loss.detach()) + 0.5 * expected_cov, rel=1e-6)
    assert float(out.nll) == pytest.approx(float(plain.nll), rel=1e-6)
    model.eval()
    assert float(task.loss(model, batch, 0.1).loss.detach()) == pytest.approx(float(plain.loss.detach()), rel=1e-6)
