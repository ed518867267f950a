"""No road to the control plane: packet-filter rules on the sandbox uid range, set once per node.

Every sandbox runs as a uid of its own from one range, so a single nftables table
(`inet warren_sandbox_<first uid>`, an output hook matching `meta skuid <range>`) rejects the
range's connections to the denied addresses and lets everything else through. The fleet's own
services (WARREN_AMQP_URL, WARREN_REDIS_URL) are always denied; WARREN_SANDBOX_DENY adds to
them (default: the cloud metadata address 169.254.169.254). A denied address that belongs to
this machine is denied on every local address (127.0.0.2, the host's own IP) for that port,
since a service listening on 0.0.0.0 answers on all of them. Nothing is added to a cold start.
Standard library only.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from warren.errors import ConfigError, InvalidParameter

METADATA = "169.254.169.254"
MODES = ("default", "none")  # none: a network namespace of its own with nothing in it
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "redis": 6379, "rediss": 6379}


@dataclass(frozen=True, order=True)
class Deny:
    """Connections to `network` (a CIDR), on `port` or every port, are refused."""

    network: str
    port: int | None = None
    local: bool = False  # an address of this machine: deny the port on all local addresses

    def rule(self, uids: str) -> str:
        reject = "reject with tcp reset" if self.port is not None else "reject"
        if self.local and self.port is not None:
            target = "fib daddr type local"
        else:
            family = "ip6" if ipaddress.ip_network(self.network).version == 6 else "ip"
            target = f"{family} daddr {self.network}"
        port = f" tcp dport {self.port}" if self.port is not None else ""
        return f"meta skuid {uids} {target}{port} {reject}"


def check_mode(mode: str) -> str:
    """A function's network mode, refused when unknown (every runtime can have either)."""
    if mode not in MODES:
        raise InvalidParameter(f"network must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def parse(entry: str, default_port: int | None = None) -> list[Deny]:
    """`host`, `host:port`, `[v6]:port`, `cidr` or `cidr:port` -> rules (names resolved now)."""
    text = entry.strip()
    port: int | None = default_port
    host = text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"WARREN_SANDBOX_DENY: bad port in {entry!r}") from None
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"WARREN_SANDBOX_DENY: port out of range in {entry!r}")
    try:
        networks = [str(ipaddress.ip_network(host, strict=False))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ConfigError(f"WARREN_SANDBOX_DENY: cannot resolve {host!r}: {exc}") from None
        networks = sorted({str(ipaddress.ip_network(i[4][0])) for i in infos})
    return [Deny(n, port, port is not None and _is_local(n)) for n in networks]


def from_urls(urls: list[str]) -> list[Deny]:
    """The addresses of the fleet's own services (unix sockets have none: file modes guard them)."""
    denied: list[Deny] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("unix", "redis+unix") or not parts.hostname:
            continue
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        denied.extend(parse(host, port))
    return denied


def _is_local(network: str) -> bool:
    net = ipaddress.ip_network(network)
    if net.num_addresses != 1:
        return False
    address = net.network_address
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))  # only an address of this machine can be bound
        except OSError:
            return False
    return True


def ruleset(first_uid: int, last_uid: int, denied: list[Deny]) -> str:
    table = f"inet warren_sandbox_{first_uid}"
    uids = f"{first_uid}-{last_uid}"
    rules = "\n".join(f"    {d.rule(uids)}" for d in sorted(set(denied)))
    # Declared, flushed and filled in one transaction: re-applying replaces, never duplicates.
    return (
        f"table {table} {{}}\nflush table {table}\n"
        f"table {table} {{\n  chain out {{\n"
        f"    type filter hook output priority 0; policy accept;\n{rules}\n  }}\n}}\n"
    )


_applied: dict[str, str | None] = {}
_lock = threading.Lock()


def install(first_uid: int, last_uid: int, denied: list[Deny]) -> str | None:
    """Apply the rules (once per process for the same set); None on success, else why not."""
    text = ruleset(first_uid, last_uid, denied)
    with _lock:
        if text in _applied:
            return _applied[text]
        nft = shutil.which("nft") or next(
            (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None
        )
        problem: str | None = None
        if nft is None:
            problem = "no nft binary (Debian package nftables)"
        else:
            done = subprocess.run([nft, "-f", "-"], input=text, capture_output=True, text=True)
            if done.returncode != 0:
                problem = f"nft refused the rules: {done.stderr.strip()[:300]}"
        _applied[text] = problem
        return problem
