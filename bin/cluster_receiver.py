"""The local cluster's partner webhook receiver (bin/cluster): answers 200 to every POST and appends
it, one JSON line each, to a file: `cluster_receiver.py HOST:PORT FILE`.

It stands for the partners' servers: the demo partners' webhook URLs point here. It records what a
partner would check (the path, the Ecard-* headers, the body) and verifies nothing itself.

`GET /control?delay=S` makes it answer each POST S seconds late (a slow partner: `bin/cluster drill`
uses it to have a delivery in flight); `GET /control` alone says the delay and how many POSTs it
is holding (and their event ids). A POST is recorded once it is answered, as a partner commits before its 200.
"""

import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    address, path = sys.argv[1], Path(sys.argv[2])
    host, port = address.rsplit(":", 1)
    lock = threading.Lock()
    state: dict = {"delay": 0.0, "holding": 0, "held": []}  # held: the event ids of the POSTs held now

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if state["delay"] > 0:
                event_id = self.headers.get("Ecard-Event-Id", "")
                with lock:
                    state["holding"] += 1
                    state["held"].append(event_id)
                try:
                    time.sleep(state["delay"])
                finally:
                    with lock:
                        state["holding"] -= 1
                        state["held"].remove(event_id)
            record = {
                "at": time.time(),
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items() if k.lower().startswith(("ecard-", "content-type"))},
                "body": body.decode(errors="replace"),
            }
            with lock, path.open("a") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # a liveness answer (how many were received), or /control
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/control":
                query = urllib.parse.parse_qs(url.query)
                if "delay" in query:
                    state["delay"] = max(0.0, min(float(query["delay"][0]), 60.0))
                payload = json.dumps(state).encode()
            else:
                with lock:
                    count = sum(1 for _ in path.open()) if path.exists() else 0
                payload = json.dumps({"received": count}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            sys.stdout.write(f"{self.address_string()} {format % args}\n")
            sys.stdout.flush()

    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
