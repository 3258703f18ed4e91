"""Typed calls to the external systems, as their contracts define them: each answer comes
back parsed into its wire model (``clients.wire``), or raises ``http.Malformed`` when it is
not what the contract allows."""

from __future__ import annotations

from dataclasses import dataclass

from .http import JsonClient
from .wire.factory import Delivery, OrderConfirmation, OrderList, OrderSummary
from .wire.iot import ActivationAccepted, VehicleStatus
from .wire.payments import Payment, PaymentInitiated, PaymentList, PaymentMethod, Refund
from .wire.registries import Registration
from .wire.vss import MaintenanceStatus


@dataclass(frozen=True, slots=True)
class IotClient:
    http: JsonClient

    async def activate(self, vin: str, service_id: str, flags: list[str], parameters: dict, duration: dict, *,
                       key: str, correlation_id: str, timeout: float) -> ActivationAccepted:
        body = {"vin": vin, "serviceId": service_id, "duration": duration,
                "configuration": {"featureFlags": flags, "parameters": parameters}}
        return await self.http.read(ActivationAccepted, "POST", "/ota/activate", json=body, idempotency_key=key,
                                    correlation_id=correlation_id, timeout=timeout)

    async def deactivate(self, vin: str, service_id: str, *, key: str, correlation_id: str) -> ActivationAccepted:
        return await self.http.read(ActivationAccepted, "POST", "/ota/deactivate",
                                    json={"vin": vin, "serviceId": service_id}, idempotency_key=key,
                                    correlation_id=correlation_id)

    async def vehicle_status(self, vin: str, *, correlation_id: str) -> VehicleStatus:
        return await self.http.read(VehicleStatus, "GET", f"/vehicles/{vin}/status", correlation_id=correlation_id)


@dataclass(frozen=True, slots=True)
class VssClient:
    http: JsonClient

    async def maintenance_status(self, vin: str, *, correlation_id: str, timeout: float) -> MaintenanceStatus:
        return await self.http.read(MaintenanceStatus, "GET", f"/vehicles/{vin}/maintenance-status",
                                    correlation_id=correlation_id, timeout=timeout)


@dataclass(frozen=True, slots=True)
class PaymentsClient:
    http: JsonClient

    async def initiate(self, payment_type: str, amount_minor: int, currency: str, method_type: str, token: str, *,
                       customer_id: str, order_id: str, description: str, key: str, correlation_id: str,
                       vin: str | None = None, service_id: str | None = None) -> PaymentInitiated:
        # vin and serviceId let the gateway's side tell what the money was for (the peer audit)
        metadata = {"customerId": customer_id, "orderId": order_id, "description": description,
                    **({"vin": vin} if vin else {}), **({"serviceId": service_id} if service_id else {})}
        body = {"paymentType": payment_type, "amount": {"value": amount_minor, "currency": currency},
                "paymentMethod": {"type": method_type, "token": token}, "metadata": metadata}
        return await self.http.read(PaymentInitiated, "POST", "/payments/initiate", json=body, idempotency_key=key,
                                    correlation_id=correlation_id)

    async def of_order(self, order_id: str, payment_type: str, *, correlation_id: str) -> list[Payment]:
        """The gateway's payments of one of our orders (what a charge we lost the answer of did)."""
        path = f"/payments?orderId={order_id}&paymentType={payment_type}"
        return (await self.http.read(PaymentList, "GET", path, correlation_id=correlation_id)).payments

    async def refund(self, payment_id: str, amount_minor: int | None, currency: str, reason: str, *, key: str,
                     correlation_id: str) -> Refund:
        body: dict = {"reason": reason}
        if amount_minor is not None:
            body["amount"] = {"value": amount_minor, "currency": currency}
        return await self.http.read(Refund, "POST", f"/payments/{payment_id}/refund", json=body, idempotency_key=key,
                                    correlation_id=correlation_id)

    async def method(self, token: str, *, correlation_id: str) -> PaymentMethod:
        """A payment method on file (or a test token): 404 (``Rejected``) when there is none."""
        return await self.http.read(PaymentMethod, "GET", f"/payment-methods/{token}", correlation_id=correlation_id)

    async def payment(self, payment_id: str, *, correlation_id: str) -> Payment:
        return await self.http.read(Payment, "GET", f"/payments/{payment_id}", correlation_id=correlation_id)


@dataclass(frozen=True, slots=True)
class FactoryClient:
    http: JsonClient

    async def place_order(self, order: dict, *, key: str, correlation_id: str) -> OrderConfirmation:
        return await self.http.read(OrderConfirmation, "POST", "/orders", json=order, idempotency_key=key,
                                    correlation_id=correlation_id)

    async def orders_for(self, reference: str, *, correlation_id: str) -> list[OrderSummary]:
        return (await self.http.read(OrderList, "GET", f"/orders?reference={reference}",
                                     correlation_id=correlation_id)).orders

    async def schedule_delivery(self, order_id: str, request: dict, *, key: str, correlation_id: str) -> Delivery:
        return await self.http.read(Delivery, "POST", f"/orders/{order_id}/delivery", json=request,
                                    idempotency_key=key, correlation_id=correlation_id)

    async def probe(self, *, correlation_id: str) -> None:
        """Whether the factory answers at all (its cheapest read, the catalogue): returns, or
        raises ``Unavailable``. The catalogue itself is not read."""
        await self.http.call("GET", "/catalogue", correlation_id=correlation_id)


@dataclass(frozen=True, slots=True)
class RegistryClient:
    """One national registry; they share one API shape (contracts/registry-*.yaml)."""
    http: JsonClient

    async def submit(self, request: dict, *, key: str, correlation_id: str) -> Registration:
        return await self.http.read(Registration, "POST", "/registrations", json=request, idempotency_key=key,
                                    correlation_id=correlation_id)

    async def get(self, registration_id: str, *, correlation_id: str) -> Registration:
        return await self.http.read(Registration, "GET", f"/registrations/{registration_id}",
                                    correlation_id=correlation_id)

    async def additional_info(self, registration_id: str, info: dict, *, key: str,
                              correlation_id: str) -> Registration:
        return await self.http.read(Registration, "POST", f"/registrations/{registration_id}/additional-info",
                                    json=info, idempotency_key=key, correlation_id=correlation_id)
