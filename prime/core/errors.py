"""User-facing errors: every message names the problem and the fix."""


class PrimeError(ValueError):
    """A problem with the user's input (a shape, a name, a file) that the user can fix.

    The command line prints it as one line and exits with status 1, without a traceback.
    """
