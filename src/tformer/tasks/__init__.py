"""What ``tformer train`` can train, picked by the config's ``task`` key.

A task (a subclass of :class:`tformer.tasks.base.Task`) checks its part of the config, builds its
model, makes its batches, computes its loss and its validation metrics and reports at the end;
:class:`tformer.training.trainer.Trainer` does the rest (Adam and Eq. 3, accumulation, checkpoints,
exact resume, skipped non-finite updates, several processes) the same way for all of them. The
registry (:mod:`tformer.tasks.registry`) maps ``task`` to the class; each module below registers
its task when imported:

* ``translation``: the paper's encoder-decoder on parallel text (:mod:`tformer.tasks.translation`);
* ``cmlm``: the conditional masked language model, decoded by mask-predict (:mod:`tformer.tasks.cmlm`);
* ``lm``: the decoder-only (GPT-style) language model on text (:mod:`tformer.tasks.lm`);
* ``classify``: the encoder-only (BERT-style) classifier, from scratch or fine-tuning a BERT such as
  all-MiniLM-L6-v2 (:mod:`tformer.tasks.classify`);
* ``vision``: the Vision Transformer on a built-in image set (:mod:`tformer.tasks.vision`);
* ``audio_classify``: the Conformer (or a plain Transformer encoder) on utterances of feature frames, such as
  the Free Spoken Digit Dataset's MFCCs (:mod:`tformer.tasks.audio`);
* ``asr``: speech recognition, the Conformer with a CTC head or the Transformer decoder, on spoken sentences
  (:mod:`tformer.tasks.asr`);
* ``qa``: extractive question answering, the encoder-only model with a span head, long contexts read in
  overlapping windows (:mod:`tformer.tasks.qa`);
* ``summarization``: the encoder-decoder with the copy mechanism and an optional coverage loss, long sources cut
  (:mod:`tformer.tasks.summarization`).

``image_classify`` runs (a ViT with its own image processor, :mod:`tformer.tasks.image_run`) have a predictor but no
task: only ``tformer import`` of a Hugging Face ViT writes them.

A trained run of any task but translation is opened by :func:`open_run`, which returns its
:class:`~tformer.tasks.predictor.Predictor` (``tformer predict``, ``tformer generate``, ``tformer serve``).

``task`` names the task (``task: cmlm``); the task's settings are the section named after it
(``cmlm: {iterations: 10, length_candidates: 3}``), typed by the task's ``Settings``.
:func:`load_run_config` reads and checks a whole config; :func:`run_training` trains it.
"""

from __future__ import annotations

from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.predictor import PREDICTORS, Predictor, open_run, register_predictor
from tformer.tasks.registry import TASKS, check_run_config, get_task, register
from tformer.tasks.run import load_run_config, parse_run_config, run_training

# Each module registers its task when imported, in this order (the order error messages list them in).
# isort: off
from tformer.tasks import translation, cmlm, lm, classify, vision, audio, asr, qa, summarization  # noqa: E402, F401
# the predictors of trained runs (tformer predict, generate, serve), beside their tasks (qa's: qa imports qa_reader)
from tformer.tasks import classify_run, vision_run, audio_run, asr_run, lm_run, summarization_run  # noqa: E402, F401
# runs of a task only tformer import writes (no training here): image_classify (an imported ViT)
from tformer.tasks import image_run  # noqa: E402, F401
# isort: on

__all__ = ["PREDICTORS", "TASKS", "Predictor", "Task", "TaskSettings", "check_run_config", "get_task",
           "load_run_config", "open_run", "parse_run_config", "register", "register_predictor", "run_training"]
