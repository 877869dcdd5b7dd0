"""The buffering worker: slow, idle, oversized and chunked clients cannot hold a thread (real gunicorn)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from urllib.parse import urlsplit

import pytest

from app.platform.httpworker import HEAD_SECONDS, READING_PER_ADDRESS, body_length
from harness.live import live_server
from tests import services
from tests.services import BOTH_BACKENDS


def test_body_length_reads_what_buffering_needs():
    head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12"
    assert body_length(head, 100) == (12, 0)
    assert body_length(b"GET / HTTP/1.1\r\nHost: a", 100) == (0, 0)
    assert body_length(head, 10) == (0, 413)
    assert body_length(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", 100) == (0, 411)
    assert body_length(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 100) == (0, 400)
    assert body_length(b"POST / HTTP/1.1\r\nContent-Length: -1", 100) == (0, 400)
    assert body_length(b"POST / HTTP/1.1\r\ncontent-length:  7 ", 100) == (7, 0)


def connect(srv, source: str) -> socket.socket:
    """A TCP connection to the server from a loopback address of its own (Linux routes all of 127/8 locally)."""
    parts = urlsplit(srv.base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=20, source_address=(source, 0))


def healthz_seconds(srv) -> float:
    """Seconds /healthz takes to answer 200 from 127.0.0.1 (fails if it takes 5 s)."""
    parts = urlsplit(srv.base_url)
    start = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    return time.monotonic() - start


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 20 s)."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.slow
@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_live_slow_and_idle_clients_cannot_starve_the_app(tmp_path, starter_dir, backend):
    """The audit's repro (two idle connections, then /healthz) and a trickled header, on gunicorn as `make run`
    starts it (2 workers); then the per-address cap, the deadline's 408, and that normal requests still work."""
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], env_extra=services.live_database(backend),
                     workers=2, prompts=0) as srv:
        idle = [connect(srv, "127.0.0.2") for _ in range(2)]
        assert healthz_seconds(srv) < 2
        # More trickling clients than both workers have threads, each sending part of a head now and then.
        trickle = [connect(srv, "127.0.0.3") for _ in range(12)]
        for sock in trickle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(3):
            for sock in trickle:
                sock.sendall(b"X-Slow: 1\r\n")
            assert healthz_seconds(srv) < 2
            time.sleep(1)
        # One address opening many connections: past its share the worker refuses it, others are served.
        flood = [connect(srv, "127.0.0.4") for _ in range(2 * READING_PER_ADDRESS + 8)]
        time.sleep(0.5)
        assert healthz_seconds(srv) < 2
        refused = 0
        for sock in flood:
            sock.settimeout(0.2)
            refused += answer_of(sock).startswith(b"HTTP/1.1 429")
        assert refused >= 8, "past the cap of each of the 2 workers, connections are refused"
        # The deadline: a head that never ends gets a 408 and the connection is closed.
        trickle[0].settimeout(HEAD_SECONDS + 10)
        started = time.monotonic()
        assert answer_of(trickle[0]).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < HEAD_SECONDS + 5
        assert answer_of(idle[0]).startswith(b"HTTP/1.1 408")
        for sock in idle + trickle + flood:
            sock.close()

        parts = urlsplit(srv.base_url)
        # A body sent in two parts is served once it is whole; keep-alive carries a second request.
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.putrequest("POST", "/api/comparisons")
        conn.putheader("Authorization", f"Bearer {srv.users['ann']['token']}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "13")
        conn.endheaders()
        conn.send(b'{"prompt": ')
        time.sleep(0.5)
        conn.send(b"1}")
        reply = conn.getresponse()
        assert reply.status == 400 and b"prompt" in reply.read()  # the app read the whole body
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()

        # Expect: 100-continue gets its 100 before the body is sent (curl waits a second for it otherwise).
        sock = connect(srv, "127.0.0.1")
        sock.sendall(b"POST /api/prompts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        sock.settimeout(3)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        sock.settimeout(10)
        assert b" 401 " in sock.recv(65536).split(b"\r\n", 1)[0] + b" "  # no token: the app answered
        sock.close()

        # A chunked body, and a body over MAX_CONTENT_LENGTH: refused before a byte of the body is read.
        for head, status in ((b"Transfer-Encoding: chunked\r\n", b"411"), (b"Content-Length: 99999999\r\n", b"413")):
            sock = connect(srv, "127.0.0.1")
            sock.sendall(b"POST /api/prompts HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
            sock.settimeout(10)
            assert answer_of(sock).startswith(b"HTTP/1.1 " + status)
            sock.close()
        assert healthz_seconds(srv) < 2
