"""The error type for bad input from a user: a missing model path, a malformed problem file, a broken recipe key.

Its message is one line that says what is wrong and what to do; the command line prints it as `error: ...` and
exits with status 2 instead of a traceback. Library callers can catch it as a `ValueError`.
"""


class InputError(ValueError):
    """Bad input from the user; `str(error)` is one line that says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
