"""One family of errors for the whole twin.

Every error raised on purpose by CIU Twin is a :class:`CiuError` and also the
built-in exception that fits it, so callers may catch either. The API maps
these classes to HTTP status codes in one table; core code never raises HTTP
errors.
"""

from __future__ import annotations


class CiuError(Exception):
    """Base class of every error CIU Twin raises on purpose."""


class ConfigError(CiuError, ValueError):
    """A setting or configuration file is wrong."""


class DatabaseUnavailable(CiuError, ConnectionError):
    """The PostGIS database cannot be reached or started."""


class MigrationError(CiuError, RuntimeError):
    """A schema migration failed or the schema is newer than this code."""


class NotFound(CiuError, LookupError):
    """A unit, variable, level or run that does not exist was asked for."""


class UnknownLevel(NotFound):
    """A level name that is not in the twin's level list."""


class UnknownUnit(NotFound):
    """A unit code that is not in the twin."""


class UnknownVariable(NotFound):
    """A variable that is not registered."""


class ValidationError(CiuError, ValueError):
    """Input data is wrong; the message names the file, row and field.

    Parameters
    ----------
    message
        What is wrong, in words.
    source
        The file (or other source) the bad record came from, if known.
    row
        Row, feature or unit code of the bad record, if known.
    field
        The field that is wrong, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = message
        self.source = source
        self.row = row
        self.field = field
        where = []
        if source is not None:
            where.append(f"file {source}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class HierarchyError(ValidationError):
    """A unit breaks the tree invariant (wrong parent level, missing parent, ...)."""


class DuplicateError(ValidationError):
    """A record that must be unique (a unit code, an observation key) is given twice."""


class ConflictError(ValidationError):
    """A source gives a different value for a record that is already stored."""


class Unauthorized(CiuError, PermissionError):
    """No valid API key was given where one is needed (unknown or revoked key)."""


class Forbidden(CiuError, PermissionError):
    """The caller's role does not allow this action."""


class RateLimited(CiuError, RuntimeError):
    """Too many calls in too short a time."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PayloadTooLarge(CiuError, ValueError):
    """A request body larger than the configured limit."""


class TimeLimitExceeded(CiuError, TimeoutError):
    """A bounded computation (such as a scenario run) did not finish in time."""
