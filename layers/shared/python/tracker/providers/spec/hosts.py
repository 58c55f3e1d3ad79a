"""Where jobs of spec types may send requests: the hosts of the template parameter ``HttpJobHosts``.

An entry is ``host``, ``host:port`` or ``*.domain`` (any host under the domain; port 443 unless given).
Every request is HTTPS. The one exception is the setting ``HTTP_JOB_PLAIN_HTTP_LOOPBACK``: template.yaml
fixes it to false, so a deployed stack is HTTPS only; the offline stack sets it to true, and then plain
HTTP is allowed to a listed loopback host (127.0.0.1, ::1, localhost), where its simulators listen. The
credentials go only to a spec's base URL; downloads (signed URLs) go without them, but also only to
allowed hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tracker.errors import ProviderRejectedError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_ENTRY = re.compile(r"^(?P<host>(?:\*\.)?[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _refused(message: str) -> ProviderRejectedError:
    # The class the state machine knows by name (it ends the job at once); the code says why.
    return ProviderRejectedError(message, code="host_not_allowed")


@dataclass(frozen=True, slots=True)
class _Entry:
    host: str  # lowercase; "*.example.com" for a domain
    port: int | None  # None: the scheme's default port

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if port != (self.port or _DEFAULT_PORTS[scheme]):
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


class HostAllowlist:
    """Parsed ``HttpJobHosts``; :meth:`check` refuses every URL outside it with a named error."""

    def __init__(self, entries: Iterable[str], *, plain_http_loopback: bool = False) -> None:
        listed = [entry.strip() for entry in entries if entry.strip()]
        self._entries = tuple(_parse(entry) for entry in listed)
        self._plain_http_loopback = plain_http_loopback
        self.text = ", ".join(listed)

    def check(self, url: str, *, what: str) -> str:
        """``url`` when it may be called; else ProviderRejectedError (code host_not_allowed)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            port = 0
        if scheme not in _DEFAULT_PORTS or not host or not port:
            raise _refused(f"{what}: {_show(url)} is not an http(s) URL with a host")
        if parts.username or parts.password:
            raise _refused(f"{what}: a URL with credentials in it is refused")
        if scheme == "http" and not (self._plain_http_loopback and host in LOOPBACK_HOSTS):
            raise _refused(f"{what}: plain http to {host} is refused (https only)")
        if not any(entry.matches(scheme, host, port) for entry in self._entries):
            listed = self.text or "none"
            raise _refused(
                f"{what}: {scheme}://{host}:{port} is not in the tracker's HttpJobHosts ({listed})"
            )
        return url


def _parse(entry: str) -> _Entry:
    match = _ENTRY.match(entry)
    if not match:
        raise ValueError(f"HttpJobHosts entry {entry!r} is not host, host:port or *.domain")
    return _Entry(match.group("host").lower(), int(match.group("port")) if match.group("port") else None)


def _show(url: str) -> str:
    """A URL for a message: scheme, host and path, never its query (a signed URL's query is a credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"[:200]
