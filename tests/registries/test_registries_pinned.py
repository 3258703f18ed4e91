"""A registration is kept as bytes (records.py), bounded in count: no collection walks any
of them, and past ``REGISTRATIONS_KEPT`` the oldest finished ones are forgotten.

In process (the model's entry points, no HTTP); the virtual clock starts on Monday
2026-01-05 08:00 UTC.
"""

import copy
import functools
import gc

import pytest
import yaml

from caas_sim.simulators.fleet import Fleet
from caas_sim.simulators.kit.config import SimConfig
from caas_sim.simulators.kit.contract import CONTRACTS_DIR
from caas_sim.simulators.kit.errors import ProblemError
from caas_sim.simulators.registries import es, uk
from caas_sim.simulators.registries.api import MODEL_KEY
from caas_sim.simulators.registries.records import (
    STATUS,
    VIN,
    Registration,
    finished,
    values,
)

DAY = 86400.0


@functools.cache
def _operations(code):
    doc = yaml.load((CONTRACTS_DIR / f"registry-{code}.yaml").read_text(), Loader=yaml.CSafeLoader)
    return doc["paths"]


def submission(code, name, index):
    """The contract's example ``name`` for the fleet's vehicle ``index``."""
    examples = _operations(code)["/registrations"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    body = copy.deepcopy(examples[name]["value"])
    body["vehicle"]["vin"] = Fleet(0).vin_at(index)
    return body


def information(code):
    """What the magic additional-info tax id asks for (the contract's example)."""
    info = _operations(code)["/registrations/{registrationId}/additional-info"]["post"]["requestBody"]
    return copy.deepcopy(info["content"]["application/json"]["examples"]["magic"]["value"])


def registry(module, seed=5):
    return module.create_app(SimConfig(seed=seed))[MODEL_KEY]


def status_of(model, registration_id):
    return model.get(registration_id)["status"]


def refused(call, *args):
    with pytest.raises(ProblemError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize("module", [es, uk], ids=["synchronous", "asynchronous"])
async def test_no_registration_is_walked_by_the_garbage_collector_whatever_happened_to_it(module):
    code = module.NAME[-2:]
    model = registry(module)
    ids = {name: model.create(submission(code, name, i), "cid")["registrationId"]
           for i, name in enumerate(("approved", "additionalInfo", "rejected"))}
    await model.service.clock.advance(30 * DAY)
    assert status_of(model, ids["additionalInfo"]) == "ADDITIONAL_INFO_REQUIRED"
    model.provide_info(ids["additionalInfo"], information(code), "cid")
    await model.service.clock.advance(30 * DAY)
    views = {name: model.get(i) for name, i in ids.items()}
    assert {name: v["status"] for name, v in views.items()} == {
        "approved": "PLATE_ASSIGNED", "additionalInfo": "PLATE_ASSIGNED", "rejected": "REJECTED"}
    assert [h["status"] for h in views["additionalInfo"]["history"]] == [
        "REGISTRATION_INITIATED", "UNDER_REVIEW", "ADDITIONAL_INFO_REQUIRED", "UNDER_REVIEW", "APPROVED",
        "PLATE_ASSIGNED"]
    for name, registration_id in ids.items():  # what the 409 and forgetting read without unpacking
        packed = model.registrations.raw(registration_id)
        fields = values(packed)
        assert (fields[STATUS], fields[VIN]) == (views[name]["status"], views[name]["vin"])
        assert finished(packed)
    del views, fields, packed
    gc.collect()
    assert len(model.registrations) == 3
    assert all(type(packed) is bytes for packed in model.registrations.raw_values())  # never tracked
    assert not any(isinstance(o, Registration) for o in gc.get_objects())


async def test_a_registration_unpacks_as_it_was_packed():
    model = registry(es)
    done = model.create(submission("es", "approved", 0))["registrationId"]
    asked = model.create(submission("es", "additionalInfo", 1))["registrationId"]
    rejected = model.create(submission("es", "rejected", 2))["registrationId"]
    await model.service.clock.advance(10 * DAY)
    for registration_id in (done, asked, rejected):
        reg = model.registrations[registration_id]
        assert Registration.unpack(reg.pack()) == reg
    reg = model.registrations[done]
    assert (reg.status, reg.registration_date.isoformat(), reg.document["type"]) == (
        "PLATE_ASSIGNED", "2026-01-05", "PERMISO_CIRCULACION")
    assert model.registrations[asked].required_info["fields"]
    assert model.registrations[rejected].rejection["code"]


async def test_past_the_registrations_kept_the_oldest_finished_are_forgotten_and_live_ones_kept():
    model = registry(es)
    model.retention.keep = 2  # REGISTRATIONS_KEPT (100,000) in small
    rejected = model.create(submission("es", "rejected", 0))["registrationId"]
    approved = model.create(submission("es", "approved", 1))  # its certificate still to come
    asked = model.create(submission("es", "additionalInfo", 2))["registrationId"]
    model.create(submission("es", "approved", 3))  # forgetting is lazy: a call does it
    assert refused(model.get, rejected).status == 404
    model.create(submission("es", "approved", 4))
    assert [status_of(model, i) for i in (approved["registrationId"], asked)] == [
        "APPROVED", "ADDITIONAL_INFO_REQUIRED"]  # unfinished: kept however many come after
    assert not finished(model.registrations.raw(asked))
    assert len(model.registrations) == 4
    assert len(model.retention._queue) == 0  # nothing left to forget is queued (kit/retention.py)
    # a VIN with a live registration is refused, whatever was forgotten
    conflict = refused(model.create, submission("es", "approved", 2))
    assert (conflict.status, conflict.title, conflict.extra) == (409, "Registration in progress", {
        "registrationId": asked, "registrationStatus": "ADDITIONAL_INFO_REQUIRED"})
    model.retention.keep = 10  # (the next call would forget the certified ones)
    await model.service.clock.advance(10 * DAY)  # every certificate issued
    conflict = refused(model.create, submission("es", "approved", 1))
    assert (conflict.status, conflict.title, conflict.extra["registrationStatus"]) == (
        409, "Vehicle already registered", "PLATE_ASSIGNED")
    model.retention.keep = 2
    model.create(submission("es", "approved", 5))
    assert refused(model.get, approved["registrationId"]).status == 404
    assert status_of(model, asked) == "ADDITIONAL_INFO_REQUIRED"
    # a forgotten VIN may be submitted again (LIMITATIONS): a new registration, a new plate
    again = model.create(submission("es", "approved", 1))
    assert again["registrationId"] != approved["registrationId"]
    assert again["plateNumber"] != approved["plateNumber"]
    model.reset()
    assert len(model.registrations) == 0 and model.create(submission("es", "approved", 2))["status"] == "APPROVED"
