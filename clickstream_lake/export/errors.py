"""Export errors, classified so an operator knows what to fix, and the retry that never duplicates.

Storage failures are sorted into:

* :class:`TargetMissing` - the bucket (or local root) does not exist: permanent, not retried;
* :class:`TargetAccessDenied` - credentials rejected or not allowed: permanent, not retried;
* :class:`TargetUnavailable` - the endpoint cannot be reached, timed out, or answered 5xx /
  SlowDown: transient, retried with exponential backoff; raised once the attempts are spent.

Retrying is safe because every object write is *create-only*: a retried PUT whose first
attempt did land finds the object already there and adopts it instead of writing a copy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_MISSING_CODES = {"NoSuchBucket"}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ConditionalRequestConflict",  # S3: a concurrent conditional write is in flight - retry
    "OperationAborted",
    "500",
    "502",
    "503",
    "504",
}
_PRECONDITION_CODES = {"PreconditionFailed", "412"}


class ExportError(RuntimeError):
    """Anything that stops an export; the message says what to do."""


class TargetMissing(ExportError):
    pass


class TargetAccessDenied(ExportError):
    pass


class TargetUnavailable(ExportError):
    pass


class NamespaceCollision(ExportError):
    """An object at this site's key was written for another site."""


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def error_code(exc: BaseException) -> str | None:
    """The S3 error code (``NoSuchBucket``, ``PreconditionFailed``…) somewhere in the chain."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            err = response.get("Error") or {}
            code = err.get("Code")
            if code:
                return str(code)
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status:
                return str(status)
    return None


def is_precondition_failed(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):
        return True
    return error_code(exc) in _PRECONDITION_CODES


def classify(exc: BaseException, where: str) -> ExportError | None:
    """Map a storage exception to an :class:`ExportError`, or None if it is not a storage error."""
    if isinstance(exc, ExportError):
        return exc
    code = error_code(exc)
    names = {type(e).__name__ for e in _chain(exc)}
    text = f"{type(exc).__name__}: {exc}"
    if code in _MISSING_CODES or (code is None and isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower()):
        return TargetMissing(f"{where}: the bucket does not exist ({text}); create it or fix CLICKSTREAM_EXPORT_URL")
    if code in _DENIED_CODES or isinstance(exc, PermissionError):
        return TargetAccessDenied(
            f"{where}: access denied ({text}); check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            " or key/secret in CLICKSTREAM_EXPORT_OPTIONS) and the bucket policy"
        )
    connection_markers = {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "IncompleteReadError",
        "ResponseStreamingError",
        "ServerTimeoutError",
        "ProxyConnectionError",
    }
    if code in _TRANSIENT_CODES or names & connection_markers or isinstance(exc, (ConnectionError, TimeoutError)):
        return TargetUnavailable(f"{where}: storage endpoint unavailable ({text})")
    return None


def with_retry(
    fn: Callable[[], T],
    *,
    where: str,
    attempts: int = 6,
    base_s: float = 0.5,
    max_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, ExportError, float], None] | None = None,
) -> T:
    """Run ``fn``; retry transient storage errors with capped exponential backoff and jitter.

    ``fn`` must be idempotent (every write in the exporter is create-only or a whole-object
    overwrite of derived data), so a retry never duplicates.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, unknown errors re-raised
            err = classify(exc, where)
            if err is None:
                raise
            if not isinstance(err, TargetUnavailable) or attempt >= attempts:
                if err is exc:
                    raise
                if isinstance(err, TargetUnavailable):
                    err = TargetUnavailable(f"{err} - gave up after {attempt} attempts")
                raise err from exc
            delay = min(max_s, base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if on_retry is not None:
                on_retry(attempt, err, delay)
            sleep(delay)
