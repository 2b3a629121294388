"""The project's exception: every bad input ends here, with a one-line message."""


class AnonyNoiseError(Exception):
    """Raised for invalid events, unreadable files and other bad input.

    The message is a single line meant for a user; command-line tools print it as is.
    """

    def __init__(self, message: str):
        # Library messages are shown verbatim at the command line: keep them on one line.
        super().__init__(" ".join(str(message).split()))
