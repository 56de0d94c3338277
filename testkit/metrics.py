"""Reading Prometheus text expositions and Prometheus's HTTP API in the tests."""

import json
import time
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None if the exposition does not have it."""
    return samples(text).get((name, tuple(sorted(labels.items()))))


def get_text(url: str, timeout: float = 10, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback URLs of the tests)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return response.read().decode()


def wait_for_http(url: str, timeout: float = 30) -> None:
    """Until `url` answers 200 (a server starting up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            get_text(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def prometheus_query(base_url: str, query: str) -> list[dict]:
    """The result vector of an instant query against Prometheus's HTTP API."""
    body = json.loads(get_text(f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})))
    assert body["status"] == "success", body
    return body["data"]["result"]
