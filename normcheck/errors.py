"""Exceptions normcheck raises on purpose."""


class NormcheckError(Exception):
    """Base class of normcheck's own errors."""


class UsageError(NormcheckError, ValueError):
    """Bad input from the user: reported as one line on stderr with exit status 2."""
