"""Lambda's error responses: the status, `x-amzn-ErrorType` and body botocore maps to exceptions."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from warren.errors import (
    CodeBundleError,
    Conflict,
    InvalidParameter,
    NotFound,
    TooManyRequests,
    Unavailable,
    WarrenError,
)


class ApiError(Exception):
    """An error the gateway answers with as it is: Lambda's code, HTTP status and message."""

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason  # TooManyRequestsException's Reason


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", 404, message)


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValueException", 400, message)


def bad_content(message: str) -> ApiError:
    return ApiError("InvalidRequestContentException", 400, message)


def too_large(limit: int) -> ApiError:
    return ApiError(
        "RequestTooLargeException",
        413,
        f"Request must be smaller than {limit} bytes for the operation",
    )


# Messages of the core's errors may name the Lambda exception they stand for (the invoker's
# "RequestTooLargeException: ..."): that name wins over the class's default.
_PREFIXED = ("RequestTooLargeException", "InvalidRequestContentException")


def from_warren(exc: WarrenError) -> ApiError:
    """The Lambda error a core error stands for."""
    message = str(exc)
    for code in _PREFIXED:
        if message.startswith(code + ":"):
            status = 413 if code == "RequestTooLargeException" else 400
            return ApiError(code, status, message.split(":", 1)[1].strip())
    if isinstance(exc, NotFound):
        return not_found(message)
    if isinstance(exc, (InvalidParameter, CodeBundleError)):
        return invalid(message)
    if isinstance(exc, Conflict):
        return ApiError("ResourceConflictException", 409, message)
    if isinstance(exc, TooManyRequests):
        return throttled(message, exc.reason, exc.retry_after_s)
    if isinstance(exc, Unavailable):
        return ApiError("ServiceException", 503, message)
    return ApiError("ServiceException", 500, message)


def throttled(message: str, reason: str, retry_after_s: float = 1.0) -> ApiError:
    return ApiError(
        "TooManyRequestsException",
        429,
        message,
        {"Retry-After": str(max(1, round(retry_after_s)))},
        reason,
    )


def error_response(error: ApiError, request_id: str) -> Response:
    """The response: botocore reads the code from the header, the message from the body."""
    body: dict[str, str] = {"Type": "User" if error.status < 500 else "Service",
                            "message": error.message}
    if error.reason:
        body["Reason"] = error.reason
    headers = {
        "x-amzn-ErrorType": error.code,
        "x-amzn-RequestId": request_id,
        **error.headers,
    }
    return Response(
        orjson.dumps(body), status_code=error.status, headers=headers,
        media_type="application/json",
    )
