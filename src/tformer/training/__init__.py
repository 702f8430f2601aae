"""Training (§5): the loop, the same for every task and every parallel mode.

* :mod:`~tformer.training.trainer`: the single-process loop (:class:`~tformer.training.trainer.Trainer`);
* :mod:`~tformer.training.parallel`: the parallel modes as strategies (one process, DDP, FSDP), over
  :mod:`~tformer.training.distributed` (the process group, sharded tensors);
* :mod:`~tformer.training.saving` (checkpoints, ``model/``, resume), :mod:`~tformer.training.metrics`
  (``metrics.jsonl``, TensorBoard), :mod:`~tformer.training.signals` (SIGINT/SIGTERM), :mod:`~tformer.training.faults`
  (non-finite updates), :mod:`~tformer.training.state` (the counters);
* :mod:`~tformer.training.label_smoothing` (the loss of §5.4), :mod:`~tformer.training.schedule` (Eq. 3),
  :mod:`~tformer.training.optimizer` (Adam, §5.3), :mod:`~tformer.training.task_loss` (the loss as one module,
  compiled or not), :mod:`~tformer.training.devices`, :mod:`~tformer.training.seed`;
* :mod:`~tformer.training.config` (the run config's shared sections) and
  :mod:`~tformer.training.config_migration` (configs of the old layout);
* :mod:`~tformer.training.run` (a whole run: run directory, seed, processes, then the trainer).

What training guarantees (each is a test; the README's "Guarantees" lists them):

* Exact resume. A checkpoint holds everything the next update depends on: weights, Adam's moments,
  the schedule, the RNG states, the position in the epoch's batch list and the partly filled log
  window. ``--resume`` after a clean stop (SIGINT/SIGTERM: the current update finishes, a checkpoint
  is written) or after a SIGKILL continues to bit-identical weights and metrics (``metrics.jsonl``
  loses the lines written after the checkpoint it resumes from, which the resumed run writes again). Not with
  ``train.decay_over: minutes``, whose learning rate follows the clock: that resume goes on with the clock it saved.
* Numerical faults. An update whose loss or gradient norm is NaN or infinite is skipped: the weights,
  Adam's state and the schedule are untouched, the batch is consumed, and a ``skip`` record goes to
  ``metrics.jsonl``. Under fp16 an update whose scaled gradient overflows is skipped the same way and
  the gradient scaler lowers its scale (its ``skip`` record says so; the summary counts these in
  ``overflow_skips`` too; ``train`` records carry ``loss_scale``). ``train.nonfinite_limit`` such updates
  in a row stop the run with a one-line error (fp16 overflows count only once the scale is down to 1);
  the checkpoints on disk are the last good ones.
* Many processes. Under ``torchrun`` each process trains on its share of every global batch and ends at
  the same weights as one process with the same global batch (:mod:`tformer.training.distributed`);
  rank 0 alone writes files.

Training imports no task: a task (:mod:`tformer.tasks`) hands the trainer an object with the
:class:`~tformer.training.task_protocol.TrainingTask` methods.
"""

from tformer.training.label_smoothing import LossOutput, label_smoothed_loss, smoothed_targets
from tformer.training.schedule import noam_lr, noam_scheduler

__all__ = ["LossOutput", "label_smoothed_loss", "noam_lr", "noam_scheduler", "smoothed_targets"]
