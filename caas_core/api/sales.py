"""HTTP for vehicle sales: the dealership registers, the customer pays, the staff resolve.

Parse, authorise, call a flow, serialise; contracts/core.yaml (tag ``sales``) is the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..clock import isoformat
from ..domain.registration import COUNTRIES, OPTION_CODES, SPECS
from ..flows import delivery, registration, sale_payments, sales
from ..flows.core import Core
from ..store import outbox
from .auth import Principal, require_role
from .problems import Problem

DEALERSHIP_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,31}$")  # the factory's dealership ids
#: Not white space as the contract's regular expressions (ECMA-262) mean it: pydantic's ``\S``
#: (Unicode's) also refuses U+0085, which the contract lets through (400 for a valid body).
_NOT_SPACE = "[^\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
PERSON_NAME = f"^{_NOT_SPACE}(.*{_NOT_SPACE})?$"  # the factory's PersonName: ^\S(.*\S)?$


M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(_Strict):
    value: int = Field(gt=0, le=10**10)
    currency: Literal["EUR", "GBP", "USD"]


class Address(_Strict):
    line1: str = Field(min_length=1, max_length=140)
    line2: str | None = Field(default=None, max_length=140)
    city: str = Field(min_length=1, max_length=80)
    postalCode: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{1,9}$")
    country: Literal[COUNTRIES]  # type: ignore[valid-type]  # the countries the core registers in


class Customer(_Strict):
    customerId: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    firstName: str = Field(min_length=1, max_length=60, pattern=PERSON_NAME)
    lastName: str = Field(min_length=1, max_length=60, pattern=PERSON_NAME)
    email: str | None = Field(default=None, max_length=254)  # format: email, checked by the contract
    type: Literal["INDIVIDUAL", "COMPANY"] = "INDIVIDUAL"
    companyName: str | None = Field(default=None, min_length=1, max_length=140)
    taxId: str = Field(pattern=r"^[A-Z0-9]{5,20}$")
    dateOfBirth: date | None = None
    driverLicense: str | None = Field(default=None, pattern=r"^[A-Z0-9]{5,20}$")
    address: Address


class Insurance(_Strict):
    provider: str = Field(min_length=1, max_length=80)
    policyNumber: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
    validFrom: date


class DealershipInfo(_Strict):
    id: str | None = Field(default=None, pattern=DEALERSHIP_ID.pattern)
    city: str = Field(min_length=1, max_length=100)


class SaleRequest(_Strict):
    customer: Customer
    model: str = Field(pattern=r"^[A-Z][A-Z0-9-]{1,31}$")
    options: list[str] = Field(default_factory=list, max_length=20)
    price: Money
    reservation: Money
    insurance: Insurance
    dealership: DealershipInfo


def plan_errors(plan: SaleRequest) -> list[str]:
    """Rules across fields (422): the shape is the contract's (400)."""
    errors = []
    if plan.model not in SPECS:
        errors.append(f"unknown model {plan.model}; known: {', '.join(sorted(SPECS))}")
    unknown = [o for o in plan.options if o not in OPTION_CODES]
    if unknown or len(set(plan.options)) != len(plan.options):
        errors.append(f"options must be distinct factory option codes; unknown: {', '.join(unknown) or '-'}")
    if plan.reservation.currency != plan.price.currency:
        errors.append("reservation and price must be in the same currency")
    if plan.reservation.value >= plan.price.value:
        errors.append("the reservation signal must be less than the price")
    if plan.customer.type == "INDIVIDUAL" and plan.customer.dateOfBirth is None:
        errors.append("an INDIVIDUAL customer needs dateOfBirth (the registries require it)")
    if plan.customer.type == "COMPANY" and not plan.customer.companyName:
        errors.append("a COMPANY customer needs companyName")
    return errors


class PaymentMethod(_Strict):
    type: Literal["CARD", "BANK_TRANSFER"]
    token: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,61}$")


class PaymentRequest(_Strict):
    paymentMethod: PaymentMethod


class InfoValues(_Strict):
    values: dict[Literal["owner.driverLicense", "owner.dateOfBirth", "vehicle.typeApprovalNumber"],
                 str] = Field(default_factory=dict)


class CustomerCorrections(_Strict):
    firstName: str | None = Field(default=None, min_length=1, max_length=60, pattern=PERSON_NAME)
    lastName: str | None = Field(default=None, min_length=1, max_length=60, pattern=PERSON_NAME)
    companyName: str | None = Field(default=None, min_length=1, max_length=140)
    taxId: str | None = Field(default=None, pattern=r"^[A-Z0-9]{5,20}$")
    dateOfBirth: date | None = None
    driverLicense: str | None = Field(default=None, pattern=r"^[A-Z0-9]{5,20}$")
    address: Address | None = None


class InsuranceCorrections(_Strict):
    provider: str | None = Field(default=None, min_length=1, max_length=80)
    policyNumber: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
    validFrom: date | None = None


class Corrections(_Strict):
    customer: CustomerCorrections = Field(default_factory=CustomerCorrections)
    insurance: InsuranceCorrections = Field(default_factory=InsuranceCorrections)


class ManualCompletion(_Strict):
    plateNumber: str = Field(pattern=r"^[A-Z0-9][A-Z0-9 -]{1,15}$")
    registrationDate: date


class Cancellation(_Strict):
    reason: str = Field(min_length=1, max_length=500)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise Problem(400, "Invalid request", "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()),
            kind="invalid-request") from None


def routes(app: web.Application, key: web.AppKey[Core], principal, correlation) -> None:
    """Add the sale operations; ``principal`` and ``correlation`` are the app's helpers."""

    async def allowed(request: web.Request, *, customer: bool, dealership: bool) -> tuple[Core, Mapping[str, Any]]:
        """The sale of the path, as read now, if the caller may act on it."""
        who: Principal = principal(request)
        core = request.app[key]
        sale = await sales.read(core, request.match_info["saleId"])
        if not (who.role == "operator" or (customer and who.role == "customer" and who.subject == sale["customer_id"])
                or (dealership and who.role == "dealership" and who.subject == sale["dealership_id"])):
            raise Problem(403, "Forbidden", "this sale belongs to another customer or dealership", kind="forbidden")
        return core, sale

    def answer(body, status: int = 200, headers=None) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    async def register(request: web.Request) -> web.Response:
        who = principal(request)
        require_role(who, "dealership", "operator")
        body = _parse(SaleRequest, await request.read())
        errors = plan_errors(body)
        if errors:
            raise Problem(422, "Sale refused", "; ".join(errors), kind="invalid-plan", errors=errors)
        plan = body.model_dump(mode="json", exclude_none=True)
        dealership_id = plan["dealership"].pop("id", None)
        if who.role == "dealership":
            if dealership_id not in (None, who.subject):
                raise Problem(403, "Forbidden", "a dealership registers its own sales only", kind="forbidden")
            dealership_id = who.subject
        if dealership_id is None or not DEALERSHIP_ID.match(dealership_id):
            raise Problem(422, "Dealership id not accepted by the factory", f"{dealership_id!r} is not a factory "
                          "dealership id (upper-case letters, digits and dashes, 3 to 32); an operator names it in "
                          "dealership.id", kind="invalid-dealership")
        view = await sales.register(request.app[key], dealership_id, plan, correlation(request))
        return answer(view, 201, {"Location": f"/sales/{view['saleId']}"})

    async def get_sale(request: web.Request) -> web.Response:
        _, sale = await allowed(request, customer=True, dealership=True)
        return answer(sales.render(sale))

    async def sale_file(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=True, dealership=True)
        return answer(await sales.file(core, sale["id"]))

    async def reserve(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=True, dealership=False)
        body = _parse(PaymentRequest, await request.read())
        return answer(await sale_payments.pay_reservation(core, sale["id"], body.paymentMethod.model_dump(), correlation(request)))

    async def final_payment(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=True, dealership=False)
        body = _parse(PaymentRequest, await request.read())
        return answer(await sale_payments.pay_final(core, sale["id"], body.paymentMethod.model_dump(), correlation(request)))

    async def additional_info(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=False, dealership=True)
        body = _parse(InfoValues, await request.read())
        await registration.provide_info(core, sale["id"], body.values, correlation(request))
        return answer(await sales.view(core, sale["id"]))

    async def resubmission(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=False, dealership=True)
        body = _parse(Corrections, await request.read())
        await registration.resubmit(core, sale["id"], body.model_dump(mode="json", exclude_none=True),
                                    correlation(request))
        return answer(await sales.view(core, sale["id"]), 202)

    async def manual_completion(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=False, dealership=True)
        body = _parse(ManualCompletion, await request.read())
        await registration.record_manual(core, sale["id"], body.plateNumber, body.registrationDate.isoformat())
        return answer(await sales.view(core, sale["id"]))

    async def cancel(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=False, dealership=True)
        body = _parse(Cancellation, await request.read())
        return answer(await sales.cancel(core, sale["id"], body.reason, correlation(request)))

    async def handover(request: web.Request) -> web.Response:
        core, sale = await allowed(request, customer=False, dealership=True)
        await delivery.hand_over(core, sale["id"])
        return answer(await sales.view(core, sale["id"]))

    async def dealership_notifications(request: web.Request) -> web.Response:
        who = principal(request)
        dealership_id = request.match_info["dealershipId"]
        if not (who.role == "operator" or (who.role == "dealership" and who.subject == dealership_id)):
            raise Problem(403, "Forbidden", "these are another dealership's notifications", kind="forbidden")
        async with request.app[key].db.transaction(readonly=True) as conn:
            found = await outbox.notifications_for(conn, dealership_id)
        return answer({"notifications": [{"notificationId": n.id, "template": n.template, "payload": n.payload,
                                          "createdAt": isoformat(n.created_at)} for n in found]})

    r = app.router
    r.add_post("/sales", register)
    r.add_get("/sales/{saleId}", get_sale)
    r.add_get("/sales/{saleId}/file", sale_file)
    r.add_post("/sales/{saleId}/reservation", reserve)
    r.add_post("/sales/{saleId}/final-payment", final_payment)
    r.add_post("/sales/{saleId}/registration/additional-info", additional_info)
    r.add_post("/sales/{saleId}/registration/resubmission", resubmission)
    r.add_post("/sales/{saleId}/registration/manual-completion", manual_completion)
    r.add_post("/sales/{saleId}/cancellation", cancel)
    r.add_post("/sales/{saleId}/handover", handover)
    r.add_get("/dealerships/{dealershipId}/notifications", dealership_notifications)

