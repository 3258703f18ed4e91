"""A team's own fixtures beside the plugin's ``caas_world``: a small JSON client of the
core's API, on the standard library (use requests or httpx in yours)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Answer:
    status: int
    body: Any


class Api:
    """``api.post(path, json)`` and ``api.get(path)`` against one base URL, as one API key."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        self.base_url = base_url
        self.headers = headers
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local: no proxy

    def get(self, path: str) -> Answer:
        return self._send("GET", path, None)

    def post(self, path: str, body: Any = None) -> Answer:
        return self._send("POST", path, body)

    def _send(self, method: str, path: str, body: Any) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={**self.headers, "Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=30) as resp:
                return Answer(resp.status, json.loads(resp.read() or b"null"))
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, json.loads(exc.read() or b"null"))


@pytest.fixture
def api(caas_world) -> Api:
    """The core's API as the customer ``c-1`` (the world's ``dev-customer`` key)."""
    return Api(caas_world.url("core"), caas_world.auth("dev-customer"))


@pytest.fixture
def vins(caas_world) -> dict[str, str]:
    """The IoT simulator's magic VINs: ``healthy``, ``flaky_twice``, ``always_offline``..."""
    return Api(caas_world.url("iot"), {}).get("/fleet/magic-vins").body["vins"]
