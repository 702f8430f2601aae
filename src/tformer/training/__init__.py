"""Training: label-smoothed loss, the Eq. 3 schedule, checkpoints and the loop."""

from tformer.training.loss import LossOutput, label_smoothed_loss, smoothed_targets
from tformer.training.schedule import noam_lr, noam_scheduler

__all__ = ["LossOutput", "label_smoothed_loss", "noam_lr", "noam_scheduler", "smoothed_targets"]
