"""The VSS workshop registry: the official and approved workshops ("homologados") that
record services, and the others VSS knows of but refuses to let write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

WorkshopKind = Literal["OFFICIAL", "APPROVED", "INDEPENDENT"]


@dataclass(frozen=True, slots=True)
class Workshop:
    id: str
    name: str
    kind: WorkshopKind
    country: str
    status: Literal["ACTIVE", "SUSPENDED"] = "ACTIVE"

    @property
    def can_record(self) -> bool:
        """Only active official and approved ("homologados") workshops write to VSS."""
        return self.kind in ("OFFICIAL", "APPROVED") and self.status == "ACTIVE"

    def view(self) -> dict:
        return {"workshopId": self.id, "name": self.name, "kind": self.kind, "country": self.country,
                "status": self.status, "canRecord": self.can_record}


DEFAULT_WORKSHOPS: tuple[Workshop, ...] = (
    Workshop("OFF-ES-MAD01", "Servicio Oficial Madrid Norte", "OFFICIAL", "ES"),
    Workshop("OFF-FR-PAR01", "Atelier Officiel Paris Est", "OFFICIAL", "FR"),
    Workshop("OFF-DE-MUC01", "Vertragswerkstatt München Süd", "OFFICIAL", "DE"),
    Workshop("OFF-GB-LON01", "Official Service Centre London West", "OFFICIAL", "GB"),
    Workshop("APP-ES-BCN01", "Taller Homologado Barcelona Sants", "APPROVED", "ES"),
    Workshop("APP-FR-LYO01", "Garage Agréé Lyon Confluence", "APPROVED", "FR"),
    Workshop("APP-DE-HAM01", "Autorisierte Werkstatt Hamburg Nord", "APPROVED", "DE"),
    Workshop("APP-GB-MAN01", "Approved Repairer Manchester", "APPROVED", "GB"),
    Workshop("APP-DE-BER02", "Autorisierte Werkstatt Berlin Mitte", "APPROVED", "DE", "SUSPENDED"),
    Workshop("IND-ES-VLC01", "Taller Independiente Valencia", "INDEPENDENT", "ES"),
)


def workshops_from(options: dict[str, Any]) -> tuple[Workshop, ...]:
    raw = options.get("workshops")
    if raw is None:
        return DEFAULT_WORKSHOPS
    return tuple(Workshop(w["workshopId"], w["name"], w["kind"], w["country"], w.get("status", "ACTIVE"))
                 for w in raw)
