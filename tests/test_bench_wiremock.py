"""WireMock beside the simulators (``caas-sim bench sim --wiremock JAR``): the stubs it is
given are the bench's operations as their contracts check them."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import jsonschema_rs
import pytest

from caas_sim.scenarios.bench_sim import operations
from caas_sim.scenarios.bench_wiremock import WireMock, _instance, contract_of, stub


def _stubs():
    return [(op, stub(contract_of(op.service), op.method, op.request(0)[0], op.expected)) for op in operations()]


def _has_ref(node) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(map(_has_ref, node.values()))
    return isinstance(node, list) and any(map(_has_ref, node))


def test_each_operation_is_stubbed_on_its_contracts_path_status_and_schema():
    for op, mapping in _stubs():
        request, response = mapping["request"], mapping["response"]
        contract = contract_of(op.service)
        assert request["method"] == op.method
        assert request["urlPathTemplate"] in contract.doc["paths"], op.name
        assert response["status"] in op.expected, op.name
        assert response["transformers"] == ["response-template"]
        json.loads(response["body"])
        if op.method == "POST":
            schema = json.loads(request["bodyPatterns"][0]["matchesJsonSchema"])
            assert not _has_ref(schema), op.name  # WireMock is given the schema whole
            validator = jsonschema_rs.Draft202012Validator(schema)
            assert all(validator.is_valid(json.loads(op.request(n)[1])) for n in range(3)), op.name
            assert not validator.is_valid({"vin": "x"}), op.name
        else:  # the VIN in the path is matched on the contract's pattern
            assert request["pathParameters"] == {"vin": {"matches": "^[A-HJ-NPR-Z0-9]{17}$"}}, op.name


def test_an_answer_the_contract_gives_no_example_of_is_built_from_its_schemas_examples():
    contract = contract_of("iot")
    op = next(o for o in contract.operations.values() if o.path == "/ota/activate")
    body = json.loads(stub(contract, "POST", "/ota/activate", {202})["response"]["body"])
    assert op.check_response(202, body) == []
    assert _instance({"type": "object", "properties": {"n": {"type": "integer"}, "k": {"enum": ["A", "B"]}}}) \
        == {"n": 0, "k": "A"}


def test_a_missing_jar_is_said_before_anything_starts(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("no java on this machine: the message is then about java")
    with pytest.raises(SystemExit, match="is not a file"):
        WireMock(str(tmp_path / "wiremock.jar"), [])


@pytest.mark.skipif(not os.path.isfile(os.environ.get("CAAS_BENCH_WIREMOCK", "")) or shutil.which("java") is None,
                    reason="set CAAS_BENCH_WIREMOCK to a wiremock-standalone-3.x.jar (java on PATH); .ci/run does")
def test_wiremock_answers_each_operation_as_stubbed_and_refuses_a_body_off_its_schema():
    stubs = _stubs()
    with WireMock(os.environ["CAAS_BENCH_WIREMOCK"], [m for _, m in stubs]) as mock:
        for op, _ in stubs:
            path, body = op.request(5)
            request = urllib.request.Request(mock.url + path, data=body or None, method=op.method,
                                             headers={"Content-Type": "application/json"} if body else {})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status in op.expected, op.name
                assert answer.headers["X-Request-Id"] and "{{" not in answer.headers["X-Request-Id"]
        off = urllib.request.Request(mock.url + "/ota/activate", data=b'{"vin": "x"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(off, timeout=30)
        assert refused.value.code == 404
        assert mock.cpu() > 0
