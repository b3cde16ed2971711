"""The probe that stops a download which cannot start: real sockets on 127.0.0.1 only
(a port listening, a port closed), never the network."""

from __future__ import annotations

import time

from binflax.data import download_probe


def test_a_host_that_refuses_is_named_at_once(no_proxy_settings, listening_port, closed_port):
    urls = [f"http://127.0.0.1:{listening_port}/a.tar", f"https://127.0.0.1:{closed_port}/b.gz"]
    start = time.monotonic()
    why = download_probe.unreachable(urls)
    assert time.monotonic() - start < 2.0
    assert why.startswith(f"127.0.0.1:{closed_port}: ") and "refused" in why, why


def test_hosts_that_accept_let_the_download_go_on(no_proxy_settings, listening_port):
    urls = [f"http://127.0.0.1:{listening_port}/a", f"http://127.0.0.1:{listening_port}/b"]
    assert download_probe.unreachable(urls) is None
    assert download_probe.unreachable([]) is None


def test_the_proxy_is_probed_where_requests_would_use_it(
    no_proxy_settings, listening_port, closed_port
):
    url = f"https://127.0.0.1:{listening_port}/file.bin"  # the host itself would accept
    no_proxy_settings.setenv("HTTPS_PROXY", f"127.0.0.1:{closed_port}")
    why = download_probe.unreachable([url])
    assert why.startswith(f"proxy 127.0.0.1:{closed_port}: ") and "refused" in why, why
    no_proxy_settings.setenv("NO_PROXY", "127.0.0.1")  # the proxy is bypassed for the host
    assert download_probe.unreachable([url]) is None


def test_an_address_without_host_or_known_port_is_left_to_tfds(no_proxy_settings):
    assert download_probe.unreachable(["gs://bucket/file", "file:///tmp/x"]) is None
