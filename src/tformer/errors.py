"""The user-error classes: the CLI turns these into one line and exit status 2.

They sit at the bottom of the layers, so that every package (:mod:`tformer.io` included) raises them without
importing anything above it.
"""


class TformerError(ValueError):
    """Something the user can fix (a path, a key, a value, the data). The message is one line."""


class ConfigError(TformerError):
    """A configuration value or key is invalid, or a saved model folder is missing, corrupt or does not fit its
    model. The message is one line meant for users."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name: what a one-line error quotes."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def os_error_line(e: OSError) -> str:
    """An OSError as one line for users: its reason and the path it names (``No such file or directory: x.txt``)."""
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"
