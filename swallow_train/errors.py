"""The base of every error a user can fix from its message alone (a bad recipe key, layout,
manifest line, checkpoint file, ...). The CLI prints these without a traceback and exits 2."""


class SwallowError(Exception):
    """Raised with a message that names the file, line or field and what to do."""
