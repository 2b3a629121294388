"""The project's exception: every bad input ends here, with a one-line message."""


class AnonyNoiseError(Exception):
    """Raised for invalid events, unreadable files and other bad input.

    The message is a single line meant for a user; command-line tools print it as is.
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        # Library messages are shown verbatim at the command line: keep them on one line.
        super().__init__(" ".join(str(message).split()))
        # the library parameter the error is about (e.g. "allow_weak"): the message names the
        # parameter, never a command-line flag; a command line adds its own flag for it
        self.parameter = parameter


def first_line(error: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's text (C++ and Rust libraries write several), or its
    type's name when it has no text, cut to `limit` characters (None: whole): a reason to put
    inside a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
