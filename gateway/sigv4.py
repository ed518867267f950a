"""AWS Signature Version 4 verification of a request's Authorization header, constant-time."""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from gateway.errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300  # a request dated more than 5 minutes off is refused, as AWS refuses it
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_SPACES = re.compile(r"\s+")


def denied(code: str, message: str) -> ApiError:
    return ApiError(code, 403, message)


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs of a request; `raw_path`/`raw_query` as they came on the wire."""

    method: str
    raw_path: str
    raw_query: str
    headers: Iterable[tuple[str, str]]  # every header line, names in any case
    body: bytes


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


class SigV4Verifier:
    """`verify(request)` returns the access key id that signed it, or raises a 403 ApiError.

    `secret_for(access_key_id)` gives the key's secret, or None for an unknown key. Signing
    keys are derived once per key, day, region and service.
    """

    def __init__(
        self,
        secret_for: Callable[[str], Awaitable[str | None]],
        *,
        service: str = "lambda",
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._secret_for = secret_for
        self.service = service
        self._now = now
        self._keys: dict[tuple[str, str, str, str, str], bytes] = {}

    async def verify(self, request: SignedRequest) -> str:
        headers = _header_map(request.headers)
        auth = headers.get("authorization")
        if not auth:
            raise denied("MissingAuthenticationTokenException", "Missing Authentication Token")
        match = _AUTH.match(auth)
        if match is None:
            raise denied(
                "IncompleteSignatureException",
                "Authorization header requires Credential, SignedHeaders and Signature "
                f"parameters of algorithm {ALGORITHM}",
            )
        credential = _credential(match["credential"])
        if credential.service != self.service:
            raise denied(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{self.service}'",
            )
        amz_date = headers.get("x-amz-date", "")
        self._check_date(amz_date, credential)
        secret = await self._secret_for(credential.access_key_id)
        if secret is None:
            raise denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        signed = match["signed"].split(";")
        if "host" not in signed:
            raise denied("InvalidSignatureException", "The host header must be signed")
        canonical = canonical_request(request, headers, signed)
        to_sign = "\n".join(
            (ALGORITHM, amz_date, credential.scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = self._signing_key(secret, credential)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            raise denied(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )
        return credential.access_key_id

    def _check_date(self, amz_date: str, credential: Credential) -> None:
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise denied(
                "IncompleteSignatureException", "X-Amz-Date must be given as YYYYMMDDTHHMMSSZ"
            ) from None
        if amz_date[:8] != credential.date:
            raise denied(
                "InvalidSignatureException", "The credential's date does not match X-Amz-Date"
            )
        skew = abs((self._now() - when).total_seconds())
        if skew > MAX_SKEW_S:
            raise denied(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is more than 5 minutes from the server's time",
            )

    def _signing_key(self, secret: str, cred: Credential) -> bytes:
        cache_key = (cred.access_key_id, secret, cred.date, cred.region, cred.service)
        key = self._keys.get(cache_key)
        if key is None:
            key = derive_key(secret, cred.date, cred.region, cred.service)
            if len(self._keys) > 1024:
                self._keys.clear()
            self._keys[cache_key] = key
        return key


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_request(request: SignedRequest, headers: dict[str, str], signed: list[str]) -> str:
    missing = [name for name in signed if name not in headers]
    if missing:
        raise denied("InvalidSignatureException", f"Signed header {missing[0]} is missing")
    header_lines = "".join(f"{name}:{headers[name]}\n" for name in signed)
    body_hash = hashlib.sha256(request.body).hexdigest()
    # A client may state the body's hash (S3's habit); it must be the body's, never
    # UNSIGNED-PAYLOAD: every byte of a Lambda request is signed.
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != body_hash:
        raise denied(
            "InvalidSignatureException",
            "The provided x-amz-content-sha256 header does not match what was computed.",
        )
    return "\n".join(
        (
            request.method.upper(),
            canonical_path(request.raw_path),
            canonical_query(request.raw_query),
            header_lines,
            ";".join(signed),
            body_hash,
        )
    )


def canonical_path(raw_path: str) -> str:
    """The path as SigV4 signs it for services other than S3: normalised, then encoded again
    (so a `%3A` on the wire is signed as `%253A`, as botocore signs it)."""
    path = raw_path or "/"
    normalized = posixpath.normpath(path)
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_uri_encode(unquote(key)), _uri_encode(unquote(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _credential(raw: str) -> Credential:
    parts = raw.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise denied(
            "IncompleteSignatureException",
            "Credential must have the form <access key id>/<date>/<region>/<service>/aws4_request",
        )
    return Credential(parts[0], parts[1], parts[2], parts[3])


def _header_map(lines: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; values trimmed, inner runs of spaces folded, repeats joined by ','."""
    out: dict[str, str] = {}
    for name, value in lines:
        key = name.lower()
        clean = _SPACES.sub(" ", value.strip())
        out[key] = f"{out[key]},{clean}" if key in out else clean
    return out
