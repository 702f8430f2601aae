"""Deployment formats for a trained translation model, each with a runtime to check it against PyTorch.

* :mod:`tformer.export.onnx`: the encoder and one decoder step with its key/value cache as ONNX graphs,
  run by ONNX Runtime;
* :mod:`tformer.export.ctranslate2`: CTranslate2's model format, run by CTranslate2.

``tformer export RUN_DIR --format onnx|ctranslate2 -o DIR --check SRC`` writes one and reports how many
greedy outputs agree with the PyTorch model (:mod:`tformer.cli.export`).
"""
