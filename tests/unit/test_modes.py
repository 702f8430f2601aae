"""eval_mode: dropout off inside the block, the caller's mode back afterwards (also after an error)."""

import pytest
from torch import nn

from tformer.nn.modes import eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_switches_dropout_off_and_restores_the_mode_even_after_an_error(training):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training is training and model[1].training is training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("decoding failed")
    assert model.training is training
