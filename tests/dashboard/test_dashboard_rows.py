"""How the dashboard draws journal entries: lanes, labels, marks."""

from caas_sim.scenarios.dashboard import rows

LANES = {"iot": "http://127.0.0.1:8103", "core": "http://127.0.0.1:8000", "sink": "http://127.0.0.1:8199"}


def entry(**fields):
    return {"seq": 1, "vt": "2026-01-05T08:00:00.000Z", "service": "iot", "direction": "in", **fields}


def test_the_caller_of_a_request_is_told_by_its_correlation_id():
    assert rows.caller(entry(kind="request", correlationId="cor_9a8b")) == "core"
    assert rows.caller(entry(kind="request", correlationId="scn-direct-3")) == "scenario"
    assert rows.caller(entry(kind="request", correlationId="dashboard-7")) == "dashboard"
    assert rows.caller(entry(kind="request", correlationId="iot-0000002a")) == "client"  # the simulator made it up
    assert rows.caller(entry(kind="request", correlationId="payments-0000002a")) == "core"  # not this service's
    assert rows.caller(entry(kind="request")) == "client"


def test_calls_webhooks_events_faults_and_violations():
    call = entry(kind="request", operation="activateService", status=202, correlationId="cor_1")
    assert rows.row(call, LANES) == {"from": "core", "to": "iot", "label": "activateService → 202", "style": "call",
                                     "mark": None}
    refused = entry(kind="request", method="GET", path="/vehicles/X/status", status=503, ruleId="down",
                    correlationId="cor_1")
    assert rows.row(refused, LANES)["label"] == "GET /vehicles/X/status → 503 ⚡down"
    assert rows.row(refused, LANES)["mark"] == "fault"
    dropped = entry(kind="request", operation="activateService", correlationId="cor_1",
                    detail={"outcome": "connection dropped"})
    assert rows.row(dropped, LANES)["label"] == "activateService → connection dropped"
    hook = entry(kind="webhook", direction="out", event="otaStatus", status=204,
                 peer="http://127.0.0.1:8000/caas/webhooks/ota-status", detail={"attempt": 2, "outcome": "delivered"})
    assert rows.row(hook, LANES) == {"from": "iot", "to": "core", "label": "otaStatus → 204 (attempt 2)",
                                     "style": "webhook", "mark": None}
    to_sink = {**hook, "peer": "http://127.0.0.1:8199/webhooks/iot"}
    assert rows.row(to_sink, LANES)["to"] == "sink"
    elsewhere = {**hook, "peer": "http://10.1.2.3:9000/ota"}
    assert rows.row(elsewhere, LANES)["to"] == "10.1.2.3:9000"
    lost = entry(kind="webhook", direction="out", event="otaStatus", peer=hook["peer"], detail={"outcome": "lost"},
                 ruleId="lose")
    assert rows.row(lost, LANES)["label"] == "otaStatus → lost ⚡lose" and rows.row(lost, LANES)["mark"] == "fault"
    event = entry(kind="event", direction="internal", event="ota.failed", detail={"errorCode": "ECU_ERROR"})
    assert rows.row(event, LANES) == {"from": "iot", "to": "iot", "label": "ota.failed ECU_ERROR", "style": "note",
                                      "mark": None}
    fault = entry(kind="fault", direction="internal", ruleId="ecu", detail={"action": "activation_failed"})
    assert rows.row(fault, LANES) == {"from": "iot", "to": "iot", "label": "⚡ fault ecu: activation_failed",
                                      "style": "note", "mark": "fault"}
    violation = entry(kind="violation", violation="body /vin: too short", correlationId="cor_2")
    assert rows.row(violation, LANES)["label"] == "⛔ contract violation: body /vin: too short"
    assert rows.row(violation, LANES)["mark"] == "violation"
    assert rows.with_row(call, LANES)["draw"]["to"] == "iot" and "draw" not in call


def test_an_entry_touches_the_ids_it_names():
    e = entry(kind="event", entities={"vin": "WCAC6SN32SZ999908", "orderId": "pur_9065bc"})
    assert rows.touches(e, "wcac6sn32sz999908") and rows.touches(e, "pur_9065") and not rows.touches(e, "ord_1")
    assert not rows.touches(e, " ") and not rows.touches(entry(kind="event"), "WCA")


def test_ota_requests_of_a_vehicle():
    vin, other = "WCAC6SN32SZ999908", "WCAB4BBU1SZ999901"
    journal = [
        entry(kind="event", event="ota.queued", entities={"vin": vin, "requestId": "ota_1", "serviceId": "s"},
              detail={"kind": "ACTIVATION"}),
        entry(kind="request", operation="activateService", entities={"vin": vin, "serviceId": "s"}, status=202),
        entry(kind="fault", ruleId="ecu", entities={"vin": vin, "requestId": "ota_1"}),
        entry(kind="event", event="ota.failed", entities={"vin": vin, "requestId": "ota_1"}, vt="2026-01-05T08:00:02Z",
              detail={"errorCode": "ECU_ERROR"}),
        entry(kind="webhook", event="otaStatus", status=204, entities={"vin": vin, "requestId": "ota_1"},
              detail={"outcome": "delivered", "attempt": 1}),
        entry(kind="event", event="ota.queued", entities={"vin": other, "requestId": "ota_2"}),
    ]
    [request] = rows.ota_requests(journal, vin)
    assert request == {"requestId": "ota_1", "serviceId": "s", "kind": "ACTIVATION", "queued": journal[0]["vt"],
                       "state": "ota.failed ECU_ERROR", "updated": "2026-01-05T08:00:02Z",
                       "webhooks": [{"vt": journal[4]["vt"], "status": 204, "outcome": "delivered", "attempt": 1}],
                       "faults": ["ecu"]}
