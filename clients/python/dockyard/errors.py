"""Exceptions raised by the client: one class per gRPC status a caller may want to catch,
each carrying the status code and the coordinator's message (which names the field and
the reason for a bad input)."""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class DockyardError(Exception):
    """A call failed. `code` is the gRPC status (None for errors raised before any call,
    such as a file that cannot be read); `message` is the server's explanation."""

    code: Optional[grpc.StatusCode] = None

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"{self.code.name}: {self.message}"


class InvalidArgument(DockyardError, ValueError):
    """The request was refused as it stands (`INVALID_ARGUMENT`); nothing was queued."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DockyardError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DockyardError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(DockyardError, PermissionError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DockyardError, PermissionError):
    """No token, or one the coordinator does not accept (revoked, expired, unknown)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(DockyardError):
    """Over a quota or a size limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DockyardError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DockyardError, ConnectionError):
    """The coordinator cannot be reached, or is a standby without a leader."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DockyardError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(DockyardError):
    code = grpc.StatusCode.CANCELLED


class Internal(DockyardError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: Dict[grpc.StatusCode, Type[DockyardError]] = {
    c.code: c  # type: ignore[misc]
    for c in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        FailedPrecondition,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}


def from_rpc_error(e: grpc.RpcError) -> DockyardError:
    """The exception for a failed call: its class chosen by status code."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else None
    cls = _BY_CODE.get(code, DockyardError) if code is not None else DockyardError
    err = cls(details or str(e), code)
    return err
