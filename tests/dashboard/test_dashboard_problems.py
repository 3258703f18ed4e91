"""Every refusal of the dashboard's API is problem+json, the reason in its detail (the page
shows `title: detail`; a plain-text answer showed only "HTTP 400")."""

import pytest
from aiohttp.test_utils import TestClient, TestServer

from caas_sim.scenarios.dashboard import create_app

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), [
    ("POST", "/api/clock", "nope", 400, "not JSON"),
    ("POST", "/api/clock", "[1]", 400, "a JSON object"),
    ("POST", "/api/faults/nowhere", "{}", 404, "no service 'nowhere'"),
    ("DELETE", "/api/faults/nowhere/rule-1", None, 404, "no service 'nowhere'"),
    ("GET", "/api/nothing-here", None, 404, None),
    ("PUT", "/api/clock", "{}", 405, None),
])
async def test_a_refused_call_is_problem_json(tmp_path, method, path, body, status, detail):
    app = create_app({"iot": "http://127.0.0.1:9"}, report=tmp_path / "none.md")
    async with TestClient(TestServer(app)) as client:
        resp = await client.request(method, path, data=body, headers=JSON)
        assert resp.status == status and resp.content_type == "application/problem+json", await resp.text()
        problem = await resp.json()
        assert problem["status"] == status and problem["title"]
        if detail:
            assert detail in problem["detail"]
