"""Can a download start at all? One connection to each host, before TFDS tries.

Why: TFDS's downloader (``requests`` with ``Retry(total=10, backoff_factor=0.2)``)
retries a connection that fails with a doubling back-off, so on a machine without
network a run sits about three and a half minutes before TFDS gives up and binflax can
say which files to put where. One TCP connection per host, with a short timeout, says
the same in seconds. A host that accepts the connection gets TFDS's download, retries
and all: the probe only stops downloads that cannot start.

[choice] The probe connects where ``requests`` (TFDS's downloader) would: to the proxy
the environment names for the URL (``HTTPS_PROXY``, ``NO_PROXY``, ...), else to the
URL's host, within :data:`TIMEOUT_S`. A URL whose host or port it cannot tell (a scheme
other than http, https or ftp without a port) is left to TFDS.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterable

import requests

TIMEOUT_S = 5.0  # a connection, not a download: a working network answers in far less
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _target(url: str) -> tuple[str, int, bool] | None:
    """``(host, port, through_proxy)`` that a download of ``url`` connects to first."""
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    address = requests.utils.prepend_scheme_if_needed(proxy, "http") if proxy else url
    parts = urllib.parse.urlsplit(address)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port, bool(proxy)


def unreachable(urls: Iterable[str], timeout: float = TIMEOUT_S) -> str | None:
    """Why no download of ``urls`` can start (the first host or proxy that refuses a
    connection, does not resolve, or does not answer within ``timeout`` seconds), in a
    few words; None when each accepts a connection."""
    probed = set()
    for url in urls:
        target = _target(url)
        if target is None or target in probed:
            continue
        probed.add(target)
        host, port, through_proxy = target
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as err:
            proxy = "proxy " if through_proxy else ""
            return f"{proxy}{host}:{port}: {err}"
    return None
