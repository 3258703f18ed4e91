"""Payment gateway: payments, settlement, refunds and late events, on the service's clock.

A payment is authorised when it is initiated. RESERVATION and FINAL payments
(the vehicle purchase) are also captured then: the answer is the blocking
outcome, CAPTURED or DECLINED. SERVICE and SUBSCRIPTION payments answer
AUTHORIZED (card) or PROCESSING (bank transfer) at once, so that CaaS can
deliver immediately and assume the risk. Every accepted payment settles later
on the clock (hours to days, configurable) and the outcome, SETTLED or FAILED,
is sent as the signed ``paymentSettlement`` webhook. Late events follow some
settlements: a chargeback (``paymentChargeback``) or a bank reversal (a second
``paymentSettlement``, FAILED with BANK_REVERSAL, after a SETTLED one).
Refunds are asynchronous too (``refundStatus``) and are paid out of settled
funds: a refund asked for before settlement completes after it.

Every webhook of a payment carries ``sequence``, the position of its event in
the payment's history, so that a receiver can tell when deliveries arrive out
of order.

LIMITATIONS (where this knowingly differs from a real gateway):
- No 3-D Secure or other customer authentication, no manual capture or void,
  no partial capture, no multi-currency conversion: a payment settles in the
  currency it was made in.
- Settlement delays are calendar time, not bank business days; fees are one
  flat rule per method type (no interchange, no scheme or cross-border fees).
- A chargeback is final when it arrives (no evidence, no dispute won back) and
  a reversal or chargeback only hits a payment still SETTLED (not fully refunded).
- Subscriptions are the caller's schedule: the gateway charges a stored method
  when asked (SUBSCRIPTION type) and keeps no billing plan or retry policy.
- The search by order id (``GET /payments?orderId=``) scans every payment: it serves
  a merchant's recovery, not a hot path.
- A refund succeeds or fails as a whole; refunds of a payment whose settlement
  then fails fail with PAYMENT_FAILED; money already refunded is not clawed back
  by a later reversal.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

from ..kit.clock import isoformat
from ..kit.delivery_faults import delivery_hooks, register_delivery_faults
from ..kit.errors import ProblemError
from ..kit.retention import Retention
from ..kit.service import Service
from ..kit.untracked import RecordStore
from . import cards
from .cards import CARD, StoredMethod
from .faults import (
    BANK_REVERSAL,
    DOMAIN_FAULTS,
    SYNCHRONOUS,
    WEBHOOK_CHARGEBACK,
    WEBHOOK_FAULTS,
    WEBHOOK_REFUND,
    WEBHOOK_SETTLEMENT,
    SettlementDelayedParams,
)
from .money import fee, fmt, money
from .ratelimit import RateLimiter
from .records import (
    AWAITING_SETTLEMENT,
    REFUND_IDS,
    Chargeback,
    Payment,
    Refund,
    Settlement,
    finished,
    of_order,
    values,
)
from .settings import Settings

#: Test behaviours that fail settlement, with the bank's reason.
SETTLEMENT_BEHAVIOURS = {cards.SETTLEMENT_FAILS: "INSUFFICIENT_FUNDS", cards.ACCOUNT_CLOSED: "ACCOUNT_CLOSED"}


#: Payments kept: past this many, the oldest finished ones (not awaiting settlement, no
#: refund pending, no bank move to come) are forgotten with their refunds (404). A count, not an age: a real
#: gateway answers for a payment of last year, and a world of a test holds far fewer.
PAYMENTS_KEPT = 100_000


class PaymentsModel:
    def __init__(self, service: Service, settings: Settings | None = None):
        self.service = service
        self.settings = settings or Settings()
        s = self.settings
        self.limiter = RateLimiter(s.rate_limit, s.rate_limit_window, s.rate_limit_scope)
        self.retention = Retention(service.clock.now, keep=PAYMENTS_KEPT)
        self.refunds: dict[str, Refund] = {}
        #: payment id -> its bank reversals and chargebacks still to come: held until the last
        self._bank_moves: dict[str, int] = {}
        #: Payments packed (records.py): read with ``.get``, changed and written back whole.
        self.payments: RecordStore[Payment] = RecordStore(lambda t: Payment.unpack(t, self.refunds), Payment.pack)
        self.methods: dict[str, StoredMethod] = {}
        self._ids = itertools.count(1)
        self._on_settle = self._settle  # one bound method for every settlement timer
        register_delivery_faults(service.faults, WEBHOOK_FAULTS)
        for name, (description, params) in DOMAIN_FAULTS.items():
            service.faults.register(name, description, params)
        service.reset_hooks.append(self.reset)

    def reset(self) -> None:
        self.retention.clear()
        self.payments.clear()
        self.refunds.clear()
        self._bank_moves.clear()
        self.methods.clear()
        self.limiter.reset()
        self._ids = itertools.count(1)

    @property
    def now(self) -> float:
        return self.service.clock.now()

    def _new_id(self, prefix: str) -> str:
        digest = hashlib.blake2b(f"{self.service.seed}:payments:{next(self._ids)}".encode(), digest_size=12)
        return prefix + digest.hexdigest()

    def _unit(self, *parts: object) -> float:
        """A uniform draw in [0, 1) that depends on the seed and ``parts`` only."""
        key = ":".join(map(str, (self.service.seed, *parts))).encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64

    def _draw(self, bounds: tuple[float, float], *parts: object) -> float:
        lo, hi = bounds
        return float(round(lo + (hi - lo) * self._unit(*parts)))

    def _bank_reference(self, *parts: object) -> str:
        key = ":".join(map(str, (self.service.seed, "btx", *parts))).encode()
        return "BTX" + hashlib.blake2b(key, digest_size=8).hexdigest().upper()

    # --- the gate every request passes -----------------------------------
    def admit(self, *, operation: str, method: str, path: str, template: str, client: str | None,
              entities: dict[str, str], correlation_id: str | None) -> None:
        """Rate limit first (the edge counts every call), then availability."""
        retry = self.limiter.hit(client, self.now)
        if retry is not None:
            s = self.settings
            who = f"client {client or 'anonymous'!r}" if s.rate_limit_scope == "client" else "all clients"
            raise ProblemError(429, "Too many requests",
                               f"rate limit of {s.rate_limit} requests per {s.rate_limit_window:g} s for {who} "
                               f"exceeded; retry in {retry} s", kind="rate-limited", headers={"Retry-After": str(retry)})
        rule = self.service.faults.take("gateway_unavailable", method=method, path=path, template=template,
                                        operation=operation, entities=entities, correlation_id=correlation_id)
        if rule is not None:
            retry_after = rule.params["retry_after"]
            raise ProblemError(503, "Payment gateway unavailable",
                               f"the gateway is temporarily unavailable; retry in {retry_after} s",
                               kind="unavailable", headers={"Retry-After": str(retry_after)}, ruleId=rule.id)

    # --- stored payment methods ---------------------------------------------
    def store_method(self, body: dict) -> dict:
        customer_id = body.get("customerId")
        if body["type"] == CARD:
            card = body["card"]
            number, month, year = card["number"], card["expMonth"], card["expYear"]
            if not cards.luhn_valid(number):
                raise ProblemError(422, "Invalid card number", "the card number fails its check digit (Luhn)",
                                   kind="invalid-card-number")
            brand = cards.card_brand(number)
            if brand is None:
                raise ProblemError(422, "Unsupported card brand",
                                   "only Visa, Mastercard and American Express cards are accepted",
                                   kind="unsupported-card-brand")
            behaviour = cards.TEST_CARD_NUMBERS.get(number, cards.SUCCESS)
            if self.now >= cards.card_expiry(month, year):
                self._verification_declined("EXPIRED_CARD", f"the card expired at the end of {month:02d}/{year}")
            if behaviour in cards.VERIFICATION_DECLINES:
                self._verification_declined(cards.VERIFICATION_DECLINES[behaviour],
                                            "the issuer declined the card verification")
            method = StoredMethod(self._new_id("pm_"), CARD, behaviour, self.now, customer_id=customer_id,
                                  brand=brand, last4=number[-4:], exp_month=month, exp_year=year,
                                  holder_name=card.get("holderName"))
        else:
            account = body["bankAccount"]
            iban = account["iban"]
            if not cards.iban_valid(iban):
                raise ProblemError(422, "Invalid IBAN", f"IBAN ending {iban[-4:]} fails its mod-97 check",
                                   kind="invalid-iban")
            method = StoredMethod(self._new_id("pm_"), cards.BANK_TRANSFER, cards.TEST_IBANS.get(iban, cards.SUCCESS),
                                  self.now, customer_id=customer_id, last4=iban[-4:], country=iban[:2],
                                  holder_name=account["holderName"])
        self.methods[method.token] = method
        entities = {"token": method.token} | ({"customerId": customer_id} if customer_id else {})
        self.service.journal.event("payment_method.stored", entities, type=method.type)
        return method.view(self.now)

    @staticmethod
    def _verification_declined(reason: str, detail: str) -> None:
        raise ProblemError(402, "Card declined", f"{detail} ({reason})", kind="card-declined", declineReason=reason)

    def method(self, token: str) -> dict:
        found = cards.TEST_TOKENS.get(token) or self.methods.get(token)
        if found is None:
            raise ProblemError(404, "Unknown payment method", f"no stored payment method {token}",
                               kind="unknown-payment-method")
        return found.view(self.now)

    def _method_for_charge(self, ref: dict, customer_id: str) -> StoredMethod:
        token = ref["token"]
        method = cards.TEST_TOKENS.get(token) or self.methods.get(token)
        if method is None:
            raise ProblemError(422, "Unknown payment method", f"no stored payment method {token}; store one with "
                               "POST /payment-methods or use a test token such as pm_card_visa",
                               kind="unknown-payment-method")
        if method.type != ref["type"]:
            raise ProblemError(422, "Payment method type mismatch",
                               f"{token} is a {method.type} method, not {ref['type']}", kind="payment-method-mismatch")
        if method.customer_id is not None and method.customer_id != customer_id:
            raise ProblemError(422, "Payment method of another customer",
                               f"{token} was stored for another customer than {customer_id}",
                               kind="payment-method-mismatch")
        return method

    # --- payments ---------------------------------------------------------------
    async def initiate(self, payment_type: str, amount: dict, method_ref: dict, metadata: dict,
                       correlation_id: str | None = None) -> dict:
        self.prune()
        method = self._method_for_charge(method_ref, metadata["customerId"])
        p = Payment(self._new_id("pay_"), payment_type, amount["value"], amount["currency"], method,
                    metadata["customerId"], metadata["orderId"], metadata.get("description"), self.now, correlation_id,
                    vin=metadata.get("vin"), service_id=metadata.get("serviceId"))
        self._event(p, "INITIATED", amount=p.amount)
        self.payments[p.id] = p
        if self.settings.authorization_latency > 0:
            # The issuer's answer takes time: GET shows INITIATED meanwhile.
            await self.service.hold(self.settings.authorization_latency)
        entities = p.entities()
        rule = self.service.domain_fault("authorization_declined", entities=entities, correlation_id=correlation_id)
        if rule is not None:
            reason = rule.params["reason"]
        elif method.expired(self.now):
            reason = "EXPIRED_CARD"
        else:
            reason = cards.AUTHORIZATION_DECLINES.get(method.behaviour)
        if reason is not None:
            p.status, p.decline_reason = "DECLINED", reason
            self._event(p, "DECLINED", reason=reason)
            self.service.journal.event("payment.declined", entities, reason=reason)
        else:
            p.captured = p.amount
            p.status = "CAPTURED" if payment_type in SYNCHRONOUS else "AUTHORIZED" if method.type == CARD else "PROCESSING"
            self._event(p, p.status, amount=p.amount)
            self.service.journal.event(f"payment.{p.status.lower()}", entities, amount=p.amount, currency=p.currency)
            self._schedule_settlement(p, entities)
        self.payments[p.id] = p
        return {"paymentId": p.id, "status": p.status, "timestamp": isoformat(self.now),
                "declineReason": p.decline_reason,
                "expectedSettlementDate": isoformat(p.expected_settlement) if p.expected_settlement else None}

    def payment(self, payment_id: str) -> dict:
        self.prune()
        return self._payment(payment_id).view()

    def payments_of_order(self, order_id: str, payment_type: str | None = None) -> list[dict]:
        """The merchant's search by its own reference: every payment of ``order_id``, oldest first."""
        found = (Payment.unpack(packed, self.refunds) for packed in self.payments.raw_values()
                 if of_order(packed, order_id))
        return [p.view() for p in found if payment_type is None or p.type == payment_type]

    def _payment(self, payment_id: str) -> Payment:
        p = self.payments.get(payment_id)
        if p is None:
            raise ProblemError(404, "Unknown payment", f"no payment {payment_id}", kind="unknown-payment")
        return p

    def _schedule_settlement(self, p: Payment, entities: dict[str, str]) -> None:
        bounds = self.settings.card_settlement_delay if p.method.type == CARD else self.settings.bank_settlement_delay
        delay = self._draw(bounds, p.id, "settlement")
        p.expected_settlement = self.now + delay
        # A bank delay is not in the expected date: the caller learns it by not being paid on time.
        rule = self.service.domain_fault("settlement_delayed", entities=entities, correlation_id=p.correlation_id)
        extra = SettlementDelayedParams.total(rule.params) if rule else 0.0
        self.service.later(delay + extra, self._on_settle, p.id)

    def _settle(self, payment_id: str) -> None:
        p = self.payments.get(payment_id)
        if p is None or p.status not in AWAITING_SETTLEMENT:
            return  # reset in between
        try:
            self._settle_payment(p)
        finally:
            self.payments[p.id] = p

    def _settle_payment(self, p: Payment) -> None:
        entities = p.entities()
        rule = self.service.domain_fault("settlement_failed", entities=entities, correlation_id=p.correlation_id)
        reason = rule.params["reason"] if rule else SETTLEMENT_BEHAVIOURS.get(p.method.behaviour)
        now = self.now
        if reason is not None:
            p.status, p.failure_reason = "FAILED", reason
            p.settlement = Settlement("FAILED", 0, now, reason, None, 0, 0)
            sequence = self._event(p, "SETTLEMENT_FAILED", amount=0, reason=reason)
            self.service.journal.event("payment.settlement_failed", entities, reason=reason)
            self._send_settlement(p, sequence)
            for refund in [r for r in p.refunds if r.status == "PENDING"]:
                self._finish_refund(p, refund, "PAYMENT_FAILED")
            return
        s = self.settings
        fees = fee(p.captured, s.card_fee_bps, s.card_fee_fixed) if p.method.type == CARD \
            else fee(p.captured, s.bank_fee_bps, s.bank_fee_fixed)
        reference = self._bank_reference(p.id, "settlement")
        p.status = "SETTLED"
        p.settlement = Settlement("SETTLED", p.captured, now, None, reference, fees, p.captured - fees)
        sequence = self._event(p, "SETTLED", amount=p.captured, reference=reference)
        self.service.journal.event("payment.settled", entities, amount=p.captured, fees=fees)
        self._send_settlement(p, sequence)
        for refund in [r for r in p.refunds if r.waiting and r.status == "PENDING"]:
            self._refund_of(p, refund)
        correlation_id = p.correlation_id
        if self.service.domain_fault("settlement_reversed", entities=entities, correlation_id=correlation_id) \
                or p.method.behaviour == cards.REVERSAL:
            self._bank_move(s.reversal_delay, self._reverse, p.id)
        rule = self.service.domain_fault("chargeback", entities=entities, correlation_id=correlation_id)
        if rule is not None or p.method.behaviour == cards.CHARGEBACK:
            params = rule.params if rule else {}
            delay = params.get("seconds", s.chargeback_delay)
            self._bank_move(delay, self._chargeback, p.id, params.get("reason", "FRAUDULENT"))

    def _bank_move(self, delay: float, move: Callable[..., None], payment_id: str, *args: Any) -> None:
        """A reversal or chargeback the bank makes later: the payment is not forgotten before."""
        self._bank_moves[payment_id] = self._bank_moves.get(payment_id, 0) + 1
        self.service.later(delay, self._on_bank_move, move, payment_id, *args)

    def _on_bank_move(self, move: Callable[..., None], payment_id: str, *args: Any) -> None:
        left = self._bank_moves.pop(payment_id, 0) - 1
        if left > 0:
            self._bank_moves[payment_id] = left
        move(payment_id, *args)
        if self.payments.raw(payment_id) is not None:  # not reset meanwhile
            self.retention.touched(payment_id)  # looked at again: a move that changed nothing touched nothing

    def _reverse(self, payment_id: str) -> None:
        p = self.payments.get(payment_id)
        if p is None or p.status != "SETTLED":
            return
        reference = self._bank_reference(p.id, "reversal")
        p.status, p.failure_reason = "FAILED", BANK_REVERSAL
        p.settlement = Settlement("FAILED", 0, self.now, BANK_REVERSAL, reference, 0, 0)
        sequence = self._event(p, "REVERSED", amount=p.captured, reason=BANK_REVERSAL, reference=reference)
        self.payments[p.id] = p
        self.service.journal.event("payment.reversed", p.entities(), amount=p.captured)
        self._send_settlement(p, sequence)

    def _chargeback(self, payment_id: str, reason: str) -> None:
        p = self.payments.get(payment_id)
        if p is None or p.status != "SETTLED":
            return
        disputed = p.captured - p.refunded - p.refund_pending
        if disputed <= 0:
            return  # nothing left to dispute
        cb = Chargeback(self._new_id("cb_"), disputed, reason, self.settings.chargeback_fee, self.now)
        p.status, p.chargeback = "CHARGED_BACK", cb
        sequence = self._event(p, "CHARGEBACK", amount=disputed, reason=reason, reference=cb.id)
        self.payments[p.id] = p
        self.service.journal.event("payment.chargeback", p.entities(), amount=disputed, reason=reason)
        payload = {"event": WEBHOOK_CHARGEBACK, "sequence": sequence, "chargebackId": cb.id,
                   "paymentId": p.id, "amount": money(cb.amount, p.currency), "reason": reason,
                   "fee": money(cb.fee, p.currency), "chargebackDate": isoformat(cb.at)}
        self._send(p, WEBHOOK_CHARGEBACK, payload, p.correlation_id)

    # --- refunds ------------------------------------------------------------------
    def refund(self, payment_id: str, amount: dict | None, reason: str, description: str | None = None,
               correlation_id: str | None = None) -> dict:
        p = self._payment(payment_id)
        c = p.currency
        refusals = {
            "INITIATED": ("Payment not captured", "the payment is still being authorized", "payment-not-captured"),
            "DECLINED": ("Payment not captured", "the payment was declined: nothing was captured",
                         "payment-not-captured"),
            "FAILED": ("Payment failed", f"the payment failed ({p.failure_reason}): there are no funds to refund",
                       "payment-failed"),
            "CHARGED_BACK": ("Payment charged back",
                             "the payment was charged back: the funds already went back to the customer",
                             "payment-charged-back"),
        }
        if p.status in refusals:
            title, detail, kind = refusals[p.status]
            raise ProblemError(422, title, f"{payment_id}: {detail}", kind=kind)
        if self.now - p.created > self.settings.refund_window:
            raise ProblemError(422, "Refund window expired",
                               f"{payment_id} was made on {isoformat(p.created)}; refunds are accepted for "
                               f"{self.settings.refund_window / 86400:g} days", kind="refund-window-expired")
        refundable = p.refundable
        if amount is not None and amount["currency"] != c:
            raise ProblemError(422, "Currency mismatch", f"the payment is in {c}, the refund in {amount['currency']}",
                               kind="currency-mismatch")
        value = refundable if amount is None else amount["value"]
        balance = (f"captured {fmt(p.captured, c)}, refunded {fmt(p.refunded, c)}, "
                   f"pending refunds {fmt(p.refund_pending, c)}")
        if refundable <= 0:
            raise ProblemError(422, "Nothing left to refund", f"{payment_id} is fully refunded ({balance})",
                               kind="refund-exceeds-captured")
        if value > refundable:
            raise ProblemError(422, "Refund exceeds the refundable amount",
                               f"refund of {fmt(value, c)} exceeds the refundable {fmt(refundable, c)} of "
                               f"{payment_id} ({balance})", kind="refund-exceeds-captured")
        refund = Refund(self._new_id("re_"), p.id, value, c, reason, description, self.now, correlation_id)
        self.refunds[refund.id] = refund
        p.refunds = (*p.refunds, refund)
        self._event(p, "REFUND_REQUESTED", amount=value, reason=reason, reference=refund.id)
        self.payments[p.id] = p
        self.service.journal.event("refund.requested", {**p.entities(), "refundId": refund.id}, amount=value,
                                   reason=reason)
        self.service.later(self._draw(self.settings.refund_delay, refund.id, "refund"), self._process_refund, refund.id)
        return refund.view()

    def refund_view(self, refund_id: str) -> dict:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise ProblemError(404, "Unknown refund", f"no refund {refund_id}", kind="unknown-refund")
        return refund.view()

    def _process_refund(self, refund_id: str) -> None:
        refund = self.refunds.get(refund_id)
        if refund is None or refund.status != "PENDING":
            return
        p = self.payments[refund.payment_id]
        try:
            self._refund_of(p, refund)
        finally:
            self.payments[p.id] = p

    def _refund_of(self, p: Payment, refund: Refund) -> None:
        """Pay ``refund`` out of ``p`` (the caller writes ``p`` back)."""
        if p.status in AWAITING_SETTLEMENT:
            refund.waiting = True  # paid out of settled funds: completes when the payment settles
            return
        if p.status == "FAILED":
            return self._finish_refund(p, refund, "PAYMENT_FAILED")
        rule = self.service.domain_fault("refund_failed", entities={**p.entities(), "refundId": refund.id},
                                         correlation_id=refund.correlation_id)
        if rule is not None:
            return self._finish_refund(p, refund, rule.params["reason"])
        if p.method.behaviour == cards.REFUND_FAILS:
            return self._finish_refund(p, refund, "CARD_CLOSED")
        self._finish_refund(p, refund, None)

    def _finish_refund(self, p: Payment, refund: Refund, failure: str | None) -> None:
        refund.status = "FAILED" if failure else "SUCCEEDED"
        refund.failure_reason, refund.completed, refund.waiting = failure, self.now, False
        if failure is None:
            p.refunded += refund.amount
            if p.status == "SETTLED" and p.refunded == p.captured:
                p.status = "REFUNDED"
        sequence = self._event(p, f"REFUND_{refund.status}", amount=refund.amount, reason=failure,
                               reference=refund.id)
        self.service.journal.event(f"refund.{refund.status.lower()}", {**p.entities(), "refundId": refund.id},
                                   amount=refund.amount, reason=failure)
        payload = {"event": WEBHOOK_REFUND, "sequence": sequence, "refundId": refund.id, "paymentId": p.id,
                   "status": refund.status, "amount": money(refund.amount, refund.currency), "failureReason": failure,
                   "completedAt": isoformat(refund.completed)}
        self._send(p, WEBHOOK_REFUND, payload, refund.correlation_id, refundId=refund.id)

    # --- history and webhooks -----------------------------------------------------
    def _event(self, p: Payment, kind: str, *, amount: int | None = None, reason: str | None = None,
               reference: str | None = None) -> int:
        """Add an entry to the payment's history; its sequence number."""
        sequence = len(p.events) + 1
        p.events = (*p.events, (sequence, kind, self.now, amount, reason, reference))  # a records.Event's fields
        self.retention.touched(p.id)
        return sequence

    def prune(self) -> None:
        """Forget the oldest finished payments past ``PAYMENTS_KEPT`` (see ``kit/retention.py``)."""
        for payment_id in self.retention.due():
            packed = self.payments.raw(payment_id)  # read as stored: most are not finished yet
            if packed is None:
                continue
            fields = values(packed)
            if not finished(fields, self.refunds) or payment_id in self._bank_moves:
                self.retention.touched(payment_id, finished=False)  # until its settlement, refund or bank move
                continue
            del self.payments[payment_id]
            for refund_id in fields[REFUND_IDS]:
                self.refunds.pop(refund_id, None)

    def _send_settlement(self, p: Payment, sequence: int) -> None:
        s = p.settlement
        assert s is not None
        payload = {"event": WEBHOOK_SETTLEMENT, "sequence": sequence, "paymentId": p.id, "status": s.status,
                   "settlementAmount": money(s.amount, p.currency), "settlementDate": isoformat(s.date),
                   "failureReason": s.failure_reason,
                   "metadata": {"bankTransactionId": s.bank_transaction_id, "fees": money(s.fees, p.currency),
                                "netAmount": money(s.net, p.currency)}}
        self._send(p, WEBHOOK_SETTLEMENT, payload, p.correlation_id)

    def _send(self, p: Payment, webhook: str, payload: dict, correlation_id: str | None, **extra: str) -> None:
        entities = {**p.entities(), **extra, "event": webhook}
        hooks = delivery_hooks(self.service.faults, WEBHOOK_FAULTS, entities, correlation_id, reorder_by="paymentId")
        self.service.webhooks.send(webhook, payload, correlation_id=correlation_id, entities=entities, hooks=hooks)
