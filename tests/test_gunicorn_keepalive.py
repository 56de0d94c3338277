"""gunicorn.conf.py's `keepalive_requests`: a keep-alive connection's Nth request is answered
`Connection: close` and the connection closed, so that long-lived partner connections spread over
the workers again (one worker uses one core at most). From a real gunicorn on loopback."""

import os
import runpy
import socket
import time
from pathlib import Path

import pytest

from testkit.processes import free_port, start_gunicorn

BASE_DIR = Path(__file__).resolve().parent.parent


def _response(sock: socket.socket, buffered: bytearray) -> tuple[bytes, dict[str, str]]:
    """One response read off `sock` (status line, headers in lower case), its body skipped."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before answering"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    buffered[:] = rest[length:]
    return lines[0].encode(), headers


@pytest.mark.django_db(transaction=True)
def test_the_nth_request_of_a_connection_is_its_last():
    port = free_port()
    server = start_gunicorn(port, GUNICORN_KEEPALIVE_REQUESTS="5", GUNICORN_ACCESS_LOG=os.devnull)
    try:
        deadline = time.time() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert time.time() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        with sock:
            buffered = bytearray()
            request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n".encode()
            for number in range(1, 6):
                sock.sendall(request)
                status, headers = _response(sock, buffered)
                assert status.startswith(b"HTTP/1.1 200"), status
                assert (headers.get("connection", "").lower() == "close") == (number == 5), (number, headers)
            assert sock.recv(1) == b""  # closed by the server after the fifth answer
        # The next connection starts its own count.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
            again.sendall(request)
            status, headers = _response(again, bytearray())
            assert status.startswith(b"HTTP/1.1 200") and headers.get("connection", "").lower() != "close"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_connections_are_kept_for_a_hundred_requests_unless_configured():
    assert runpy.run_path(str(BASE_DIR / "gunicorn.conf.py"))["keepalive_requests"] == 100
