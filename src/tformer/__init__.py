"""tformer: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017), exact and visible.

    >>> import tformer
    >>> model = tformer.Transformer(tformer.TransformerConfig.tiny())
"""

from tformer.config import ConfigError
from tformer.errors import TformerError  # noqa: E402
from tformer.generation import GenerationOptions  # noqa: E402
from tformer.models.transformer.config import TransformerConfig  # noqa: E402
from tformer.models.transformer.model import Transformer  # noqa: E402
from tformer.translator import Translator  # noqa: E402
from tformer.version import VERSION as __version__  # noqa: E402

__all__ = ["ConfigError", "GenerationOptions", "TformerError", "Transformer", "TransformerConfig", "Translator",
           "__version__", "interop"]


def __getattr__(name: str):
    # Lazy submodules: `tformer.interop` pulls in nothing heavy until used.
    if name in ("interop", "generation", "data", "training", "evaluation", "viz", "serving"):
        import importlib

        return importlib.import_module(f"tformer.{name}")
    raise AttributeError(f"module 'tformer' has no attribute {name!r}")
