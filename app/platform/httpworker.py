"""gunicorn's threaded worker, with every request read whole by the event loop before a thread takes it.

A sync worker (and gunicorn's own gthread once the first byte arrives) reads a request in the thread that will
serve it, so two idle connections, or one header trickled every few seconds, held `make run` for as long as the
client liked. Here the worker's event loop reads each request without blocking, up to its whole body, within a
deadline, and only then hands it to a thread, the way a buffering proxy (compose's nginx) does. A client that is
slow, idle or too large costs a socket and some memory, never a thread. gunicorn has no setting for this (its
gthread waits for the first byte only), hence the subclass.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import time
from collections import Counter
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

# The request line and headers must arrive within this many seconds of the connection (or of the previous answer
# on a kept-alive one); a body gets as long again, plus a second for every BODY_MIN_RATE bytes.
HEAD_SECONDS = 10.0
BODY_MIN_RATE = 50_000
MAX_HEAD = 64 * 1024  # bytes of request line and headers (gunicorn's own limits are per line and per field)
# Requests being read at once from one address, per worker: one address cannot fill the worker's connections.
READING_PER_ADDRESS = 32
# A thread writing an answer to a client that does not read it gives up after this long.
SEND_SECONDS = 30

EXPECT_CONTINUE = re.compile(rb"(?i)\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n|\Z)")
REASONS = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
           429: "Too Many Requests", 431: "Request Header Fields Too Large"}


class Reading:
    """A request being read: its bytes so far, its deadline, and its full length once the head is in."""

    __slots__ = ("address", "data", "deadline", "length")

    def __init__(self, address: str, data: bytes, deadline: float) -> None:
        self.address = address
        self.data = bytearray(data)
        self.deadline = deadline
        self.length: int | None = None


class BufferingWorker(ThreadWorker):
    """A gthread worker whose event loop reads each request whole (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading: dict = {}  # conn -> Reading
        self.reading_by_address: Counter = Counter()
        # TLS and HTTP/2 prior knowledge read the socket themselves; neither is used here, so they keep gthread's way.
        self.buffering = not self.cfg.is_ssl and getattr(self.cfg, "http2_cleartext", "off") == "off"

    def max_body(self) -> int:
        """The app's MAX_CONTENT_LENGTH: a longer body is refused before it is read."""
        return int(self.wsgi.config.get("MAX_CONTENT_LENGTH") or 2 * 1024 * 1024)

    def enqueue_req(self, conn) -> None:
        """Hand a connection whose request is read whole to a thread; read it first otherwise."""
        if not self.buffering or getattr(conn, "whole", False):
            conn.whole = False
            return super().enqueue_req(conn)
        # Bytes gunicorn read ahead of the last answer on a kept-alive connection start the next request.
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self.start_reading(conn, leftover)

    def start_reading(self, conn, data: bytes) -> None:
        """Put a connection on the event loop until its request is whole, or refuse it."""
        address = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client)
        if self.reading_by_address[address] >= READING_PER_ADDRESS:
            self.refuse(conn, 429)
            return
        conn.sock.setblocking(False)
        if conn.parser is None:  # a new connection: bound what a thread may later wait on it
            with contextlib.suppress(OSError):
                timeout = struct.pack("ll", SEND_SECONDS, 0)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        state = Reading(address, data, time.monotonic() + HEAD_SECONDS)
        self.reading[conn] = state
        self.reading_by_address[address] += 1
        if not self.advance(conn, state):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))

    def on_readable(self, conn, sock) -> None:
        """Read what arrived without blocking; hand the request on when it is whole."""
        state = self.reading.get(conn)
        if state is None:
            return
        try:
            chunk = sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self.drop(conn)
            return
        state.data += chunk
        self.advance(conn, state)

    def advance(self, conn, state: Reading) -> bool:
        """Hand the request to a thread once it is whole, or refuse it; False while more is to come."""
        if state.length is None:
            end = state.data.find(b"\r\n\r\n")
            if end < 0:
                if len(state.data) > MAX_HEAD:
                    self.refuse(conn, 431)
                    return True
                return False
            head = bytes(state.data[:end])
            body, status = body_length(head, self.max_body())
            if status:
                self.refuse(conn, status)
                return True
            if body and EXPECT_CONTINUE.search(head):
                # The client waits for this before it sends the body (curl does, for a second, past 1 KB). The
                # header is then taken out, as a proxy does: gunicorn would send a second 100 after the body.
                with contextlib.suppress(OSError):
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                head = EXPECT_CONTINUE.sub(b"", head)
                state.data[:end] = head
            state.length = len(head) + 4 + body
            state.deadline = time.monotonic() + HEAD_SECONDS + body / BODY_MIN_RATE
        if len(state.data) < state.length:
            return False
        self.stop_reading(conn)
        conn.whole = True
        conn.prefetched = bytes(state.data)
        conn.data_ready = True
        super().enqueue_req(conn)
        return True

    def handle(self, conn):
        """Serve the request read on the event loop: the parser reads it from memory, not from the socket."""
        prefetched = getattr(conn, "prefetched", b"")
        if prefetched:
            conn.prefetched = b""
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(prefetched)
        return super().handle(conn)

    def stop_reading(self, conn) -> None:
        """Take a connection off the event loop's reading list."""
        state = self.reading.pop(conn, None)
        if state is None:
            return
        self.reading_by_address[state.address] -= 1
        if self.reading_by_address[state.address] <= 0:
            del self.reading_by_address[state.address]
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def drop(self, conn) -> None:
        """Close a connection that is being read, without an answer."""
        self.stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def refuse(self, conn, status: int) -> None:
        """Answer a request that will not be served (slow, too large, too many) with a short error, and close."""
        reason = REASONS[status]
        body = f"{status} {reason}\n".encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            conn.sock.setblocking(False)
            conn.sock.send(head + body)  # best effort: a client that does not read it loses nothing it asked for
        self.drop(conn)

    def murder_pending(self) -> None:
        """gunicorn's sweep of idle connections, plus: answer 408 to requests past their deadline (all, when
        stopping)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, state in list(self.reading.items()):
            if not self.alive or state.deadline <= now:
                self.refuse(conn, 408)


def body_length(head: bytes, limit: int) -> tuple[int, int]:
    """The body length a request head announces, and 0; or 0 and the status that refuses it.

    Only what buffering needs is checked; gunicorn's parser checks the rest once a thread has the request."""
    lengths, chunked = [], False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        return 0, 411  # a chunked body has no length to read up to; browsers never send one
    if not lengths:
        return 0, 0
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 12:
        return 0, 400
    length = int(lengths[0])
    return (0, 413) if length > limit else (length, 0)
