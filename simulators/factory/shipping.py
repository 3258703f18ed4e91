"""The road from the plant to the dealership, as the subcontracted carrier tracks it.

A shipment is one truck run: loaded at the plant (the factory records the
shipment timestamp), through the carrier's hub in the destination country,
then to the dealership, which confirms receipt. Checkpoints are reported at
fixed fractions of the transit time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .timeline import unit

#: The plant every car is built in (configurable with the ``plant`` option).
DEFAULT_PLANT = {"name": "Almussafes assembly plant", "city": "Almussafes", "country": "ES"}
#: The transport company the factory subcontracts (``carrier`` option): shipments and home deliveries.
DEFAULT_CARRIER = {"name": "Rutacar Logistics S.L.", "code": "RCL"}

#: The carrier's vehicle hub in each country CaaS sells in.
HUBS = {
    "ES": "Madrid-Coslada vehicle hub",
    "FR": "Lyon-Saint-Exupéry vehicle hub",
    "DE": "Mannheim rail-road terminal",
    "GB": "Portbury vehicle terminal (Bristol)",
}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    code: str
    fraction: float  # of the transit time at which it is reached
    location: str
    description: str


def route(plant: dict, dealership: dict) -> tuple[Checkpoint, ...]:
    """Loading at the plant, hub arrival and departure; arrival is the order's own status."""
    hub = HUBS.get(dealership["country"], f"{dealership['country']} vehicle hub")
    city = dealership["city"]
    crossing = "" if dealership["country"] == plant["country"] else " after customs clearance"
    return (
        Checkpoint("LOADED", 0.0, plant["name"], f"Loaded on a car transporter at the {plant['name']}"),
        Checkpoint("HUB_ARRIVAL", 1 / 3, hub, f"Arrived at the {hub}{crossing}"),
        Checkpoint("HUB_DEPARTURE", 2 / 3, hub, f"Left the {hub} for {city}"),
    )


def arrival(dealership: dict) -> Checkpoint:
    return Checkpoint("DELIVERED_TO_DEALERSHIP", 1.0, f"Dealership {dealership['id']}, {dealership['city']}",
                      "Unloaded at the dealership; receipt confirmed by the dealership")


def tracking_number(seed: int, carrier_code: str, kind: str, entity_id: str) -> str:
    """A carrier tracking number: its code, a kind letter (S shipment, D delivery), ten digits."""
    return f"{carrier_code}{kind}{int(unit(seed, 'tracking', kind, entity_id) * 10**10):010d}"
