"""Files on disk: atomic writes, run checkpoints, pretrained model folders."""
