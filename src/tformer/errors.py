"""The user-error base class: the CLI turns these into one line and exit status 2."""


class TformerError(ValueError):
    """Something the user can fix (a path, a key, a value, the data). The message is one line."""
