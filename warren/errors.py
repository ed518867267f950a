"""The error tree every room raises from; library exceptions are translated at the edges.

    WarrenError
    ├── ConfigError            bad settings or environment (a URL that does not parse, ...)
    ├── InvalidParameter       a user's input is out of range or malformed (Lambda's 400s)
    ├── NotFound               a function, version, alias or mapping that does not exist (404)
    ├── Conflict               the resource exists already or is in use (409)
    ├── TooManyRequests        admission refused over the concurrency limit (429)
    ├── CodeBundleError        a code directory or zip that cannot be stored or unpacked
    ├── DecodeError            a wire message that is not a valid envelope
    ├── Unavailable            infrastructure cannot be reached
    │   ├── BrokerUnavailable  RabbitMQ
    │   ├── StoreUnavailable   Redis, or an S3 endpoint
    │   └── NoLiveWorker       no worker heartbeats for the pool a sync call waits on
    └── SandboxError           the sandbox itself failed (not the handler: those are outcomes)
"""

from __future__ import annotations


class WarrenError(Exception):
    """Root of every error Warren raises on purpose."""


class ConfigError(WarrenError):
    pass


class InvalidParameter(WarrenError):
    pass


class NotFound(WarrenError):
    pass


class Conflict(WarrenError):
    pass


class TooManyRequests(WarrenError):
    """Lambda's TooManyRequestsException; `reason` is one of Lambda's Reason values."""

    def __init__(self, message: str, reason: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class CodeBundleError(WarrenError):
    pass


class DecodeError(WarrenError):
    pass


class Unavailable(WarrenError):
    pass


class BrokerUnavailable(Unavailable):
    pass


class StoreUnavailable(Unavailable):
    pass


class NoLiveWorker(Unavailable):
    pass


class SandboxError(WarrenError):
    pass
