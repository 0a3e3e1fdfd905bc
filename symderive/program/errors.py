"""The one exception a bad derivation or a bad argument raises, apart from everything else so that
the command line can catch it without loading SymPy (``symderive --help`` answers at once)."""


class ProgramError(ValueError):
    """A derivation symderive cannot use; the message names the statement and what to change."""
