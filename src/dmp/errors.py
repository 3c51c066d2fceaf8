"""One error hierarchy. Adapters render it: OperationOutcome (FHIR), JSON, HTML or a CLI message.

Messages never carry keys, tokens or patient data; they say what was wrong with the request.
"""

from __future__ import annotations


class DmpError(Exception):
    """Base class. ``status`` is the HTTP status an adapter should use; ``code`` is stable."""

    status = 500
    code = "exception"

    def __init__(
        self, message: str, *, reason: str | None = None, french: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        # The same message in French, for the portals, where the rules word it themselves.
        self.french = french


class ConfigurationError(DmpError):
    code = "configuration"


class InvalidInput(DmpError):
    """The request is malformed or a value is invalid (HTTP 400/422)."""

    status = 422
    code = "invalid"


class BadRequest(InvalidInput):
    status = 400


class InvalidItem(InvalidInput):
    """One item of a batch is invalid; ``index`` says which, so an adapter can name it."""

    def __init__(self, message: str, index: int, *, french: str | None = None) -> None:
        super().__init__(message, french=french)
        self.index = index


class MethodNotAllowed(DmpError):
    """The interaction exists but not for this (e.g. a PATCH outside the patchable fields)."""

    status = 405
    code = "not-supported"


class PreconditionFailed(DmpError):
    """A conditional request's version precondition (If-Match) does not hold."""

    status = 412
    code = "conflict"


class NotAuthenticated(DmpError):
    status = 401
    code = "login"


class Forbidden(DmpError):
    """The actor is known, the target may be revealed, but the action is refused (HTTP 403)."""

    status = 403
    code = "forbidden"


class NotFound(DmpError):
    """Missing, or hidden from this actor: the two are deliberately indistinguishable (HTTP 404)."""

    status = 404
    code = "not-found"


class Conflict(DmpError):
    status = 409
    code = "conflict"


class IntegrityFailure(DmpError):
    """Stored data failed a check (audit chain, ciphertext authentication)."""

    code = "exception"


class TooManyRequests(DmpError):
    """Too many attempts from one address or on one account: try again later."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DmpError):
    """The database cannot be reached or refuses connections: try again shortly (503 with
    Retry-After). Nothing was changed."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
