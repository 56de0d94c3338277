"""A load generator for the partner API that signs every request like a partner.

Run as its own process (bench/verify_bench.py starts it), never inside the
server: `--processes` worker processes, each an asyncio loop holding
`--connections` keep-alive HTTP/1.1 connections. Every request is signed as
it is sent (`ECARD-ED25519` over method, target, timestamp, a fresh nonce and
the body), so that no two requests share a nonce, as the contract requires.

Two modes:
- `closed`: each connection sends its next request as soon as the previous one
  answered; the throughput at saturation.
- `open`: requests are due at a fixed total `--rate`, whatever the server does;
  a latency is measured from the time the request was due (so a slow server
  cannot hide its queueing: no coordinated omission).

Prints one JSON object: requests, statuses, requests/s, latency percentiles (ms).
Plain requests without signing (`--unsigned`) serve the ceiling endpoint.
"""

import argparse
import asyncio
import base64
import json
import multiprocessing
import secrets
import statistics
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _authorization(private_key: Ed25519PrivateKey, key_id: str, method: str, target: str, body: bytes) -> str:
    timestamp = int(time.time())
    nonce = secrets.token_urlsafe(18)
    to_sign = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(private_key.sign(to_sign)).decode()
    return f'ECARD-ED25519 key_id="{key_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'


def _request_bytes(args, private_key: Ed25519PrivateKey | None, body: bytes) -> bytes:
    lines = [f"{args.method} {args.path} HTTP/1.1", f"Host: {args.host}:{args.port}", "Connection: keep-alive"]
    if body or args.method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if private_key is not None:
        lines.append("Authorization: " + _authorization(private_key, args.key_id, args.method, args.path, body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if length:
        await reader.readexactly(length)
    return status, keep_alive


async def read_full_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    """The status, the headers (names in lower case), the body, and whether the connection stays open.

    For clients that look at what they get (bench/settlement_bench.py); `Content-Length` or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our servers
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    else:
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
    return status, headers, body, headers.get("connection", "").lower() != "close"


def signed_request(
    private_key: Ed25519PrivateKey,
    key_id: str,
    host: str,
    port: int,
    method: str,
    target: str,
    body: bytes,
    extra_headers: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """One keep-alive HTTP/1.1 request signed as a partner signs it, and the nonce it carries."""
    timestamp = int(time.time())
    nonce = secrets.token_urlsafe(18)
    to_sign = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(private_key.sign(to_sign)).decode()
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: keep-alive",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f'Authorization: ECARD-ED25519 key_id="{key_id}",timestamp="{timestamp}",nonce="{nonce}",'
        f'signature="{signature}"',
    ]
    lines += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body, nonce


async def _run(args, start_at: float) -> dict:
    private_key = None if args.unsigned else Ed25519PrivateKey.from_private_bytes(base64.b64decode(args.private_key))
    body = args.body.encode()
    measure_from = start_at + args.warmup
    end_at = measure_from + args.duration
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    due: asyncio.Queue[float] | None = None
    answered = 0  # warm-up included: the server's CPU time is divided by it

    async def schedule() -> None:
        # Open loop: this process's share of the rate, evenly spaced from its own offset.
        interval = args.processes / args.rate
        next_due = start_at + interval * (args.index / args.processes)
        while next_due < end_at:
            delay = next_due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait(next_due)
            next_due += interval
        for _ in range(args.connections):
            due.put_nowait(0.0)  # stop

    async def connection() -> None:
        nonlocal answered
        reader = writer = None
        while True:
            if due is not None:
                sent_due = await due.get()
                if sent_due == 0.0:
                    break
            else:
                if time.time() >= end_at:
                    break
                sent_due = time.time()
            if writer is None:
                reader, writer = await asyncio.open_connection(args.host, args.port)
            started = time.time() if due is None else sent_due
            writer.write(_request_bytes(args, private_key, body))
            await writer.drain()
            try:
                status, keep_alive = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                status, keep_alive = 0, False
            finished = time.time()
            answered += 1
            if measure_from <= started and finished <= end_at + (0 if due is None else 5):
                latencies.append((finished - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
            if not keep_alive:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    delay = start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    tasks = [asyncio.create_task(connection()) for _ in range(args.connections)]
    if args.mode == "open":
        due = asyncio.Queue()
        tasks.append(asyncio.create_task(schedule()))
    await asyncio.gather(*tasks)
    return {"latencies": latencies, "statuses": statuses, "answered": answered}


def _process(args, index: int, start_at: float) -> dict:
    args.index = index
    return asyncio.run(_run(args, start_at))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", default="")
    parser.add_argument("--key-id", default="")
    parser.add_argument("--private-key", default="", help="standard base64 of the 32 raw private bytes")
    parser.add_argument("--unsigned", action="store_true")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--rate", type=float, default=100.0, help="open mode: requests per second in total")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8, help="per process")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()

    start_at = time.time() + 0.5
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        parts = pool.starmap(_process, [(args, i, start_at) for i in range(args.processes)])
    latencies = [value for part in parts for value in part["latencies"]]
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
    print(
        json.dumps(
            {
                "mode": args.mode,
                "path": args.path,
                "requests": len(latencies),
                "statuses": statuses,
                "requests_per_second": round(len(latencies) / args.duration, 1),
                "answered_with_warmup": sum(part["answered"] for part in parts),
                "p50_ms": round(percentile(latencies, 0.50), 2),
                "p90_ms": round(percentile(latencies, 0.90), 2),
                "p99_ms": round(percentile(latencies, 0.99), 2),
                "max_ms": round(max(latencies), 2) if latencies else None,
                "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
                "target_rate": args.rate if args.mode == "open" else None,
            }
        )
    )


if __name__ == "__main__":
    main()
