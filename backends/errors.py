"""The one error tree every backend maps its library's errors into."""

from __future__ import annotations


class BackendError(Exception):
    """Root of every backend error. Messages never carry credentials."""


class NotFound(BackendError):
    """The named object does not exist."""


class TransientError(BackendError):
    """A failure that may go away if retried (timeouts, 5xx, throttling, resets)."""


class PermanentError(BackendError):
    """A failure that retrying will not fix (bad credentials, missing bucket, bad name)."""


class QuotaExceeded(PermanentError):
    """The backend refused the write because its quota or disk is full."""


class InvalidName(PermanentError):
    """An object name outside the allowed alphabet or shape."""


class ConfigError(PermanentError):
    """A backend's configuration is unusable (unknown kind, missing or bad option)."""
