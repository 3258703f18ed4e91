"""What the factory builds: models, factory-fitted options and the rules between them.

Model names and their VIN model-line letters are those of the API IoT fleet
(``caas_sim.simulators.fleet.MODELS``), so that the VIN the factory stamps on a
car is one the IoT simulator of the same seed knows, as the same model.
Options here are physical and fitted on the line (paint, wheels, towbar);
the optional services CaaS sells later are firmware feature flags, a matter
for the API IoT, not the factory.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Why the factory refuses an order (the ``reason`` of a 422 ``order-rejected`` problem).
REJECTION_REASONS = (
    "MODEL_DISCONTINUED",         # the model is no longer built
    "INVALID_OPTIONS",            # an option is not offered on the model
    "INCOMPATIBLE_OPTIONS",       # two options of one exclusive group (two paints, two wheel sizes)
    "DEALERSHIP_NOT_AUTHORISED",  # the dealership may not order from this factory
    "PRODUCTION_CAPACITY_EXCEEDED",
    "EXPORT_RESTRICTED",
)


@dataclass(frozen=True, slots=True)
class Option:
    code: str
    description: str
    group: str | None = None  # at most one option per exclusive group


@dataclass(frozen=True, slots=True)
class Model:
    code: str
    name: str
    vin_line: str | None  # VDS model-line letter of the IoT fleet; None: never built here
    body: str
    powertrain: str
    options: frozenset[str]
    available: bool = True


OPTIONS: dict[str, Option] = {o.code: o for o in (
    Option("PAINT-POLAR-WHITE", "Solid paint, polar white", "PAINT"),
    Option("PAINT-MIDNIGHT-BLACK", "Metallic paint, midnight black", "PAINT"),
    Option("PAINT-VOLCANO-RED", "Metallic paint, volcano red", "PAINT"),
    Option("PAINT-GLACIER-BLUE", "Pearlescent paint, glacier blue", "PAINT"),
    Option("PAINT-TITANIUM-GREY", "Matte paint, titanium grey", "PAINT"),
    Option("WHEELS-17", "17-inch alloy wheels", "WHEELS"),
    Option("WHEELS-18", "18-inch alloy wheels", "WHEELS"),
    Option("WHEELS-19", "19-inch alloy wheels", "WHEELS"),
    Option("WHEELS-20", "20-inch forged wheels", "WHEELS"),
    Option("INTERIOR-CLOTH", "Cloth upholstery", "INTERIOR"),
    Option("INTERIOR-LEATHER", "Nappa leather upholstery", "INTERIOR"),
    Option("INTERIOR-VEGAN", "Recycled-fibre vegan upholstery", "INTERIOR"),
    Option("TOWBAR", "Retractable towbar"),
    Option("PANORAMIC-ROOF", "Fixed panoramic glass roof"),
    Option("HEAT-PUMP", "Heat pump for the battery and cabin (electrified models)"),
    Option("SPORT-SEATS", "Sport seats with extended bolsters"),
    Option("HEAD-UP-DISPLAY", "Windscreen head-up display"),
    Option("ROOF-RAILS", "Aluminium roof rails"),
    Option("SPARE-WHEEL", "Space-saver spare wheel (combustion models)"),
)}

_PAINTS = {c for c, o in OPTIONS.items() if o.group == "PAINT"}
_INTERIORS = {c for c, o in OPTIONS.items() if o.group == "INTERIOR"}
_COMMON = _PAINTS | _INTERIORS | {"PANORAMIC-ROOF", "HEAD-UP-DISPLAY"}

MODELS: dict[str, Model] = {m.code: m for m in (
    Model("AURORA-GT", "Aurora GT", "A", "COUPE", "PETROL",
          frozenset(_COMMON | {"WHEELS-19", "WHEELS-20", "SPORT-SEATS", "SPARE-WHEEL"})),
    Model("BOREALIS", "Borealis", "B", "SUV", "HYBRID",
          frozenset(_COMMON | {"WHEELS-18", "WHEELS-19", "WHEELS-20", "TOWBAR", "ROOF-RAILS", "HEAT-PUMP"})),
    Model("CIRRUS", "Cirrus", "C", "HATCHBACK", "PETROL",
          frozenset(_COMMON | {"WHEELS-17", "WHEELS-18", "SPORT-SEATS", "SPARE-WHEEL"})),
    Model("NIMBUS", "Nimbus", "N", "SALOON", "DIESEL",
          frozenset(_COMMON | {"WHEELS-17", "WHEELS-18", "WHEELS-19", "TOWBAR", "SPARE-WHEEL"})),
    Model("STRATOS", "Stratos", "S", "ESTATE", "PLUG_IN_HYBRID",
          frozenset(_COMMON | {"WHEELS-17", "WHEELS-18", "WHEELS-19", "TOWBAR", "ROOF-RAILS", "HEAT-PUMP"})),
    Model("VELA-CROSS", "Vela Cross", "V", "CROSSOVER", "HYBRID",
          frozenset(_COMMON | {"WHEELS-18", "WHEELS-19", "TOWBAR", "ROOF-RAILS", "HEAT-PUMP"})),
    Model("ZEPHYR-EV", "Zephyr EV", "Z", "HATCHBACK", "ELECTRIC",
          frozenset(_COMMON | {"WHEELS-17", "WHEELS-18", "WHEELS-19", "HEAT-PUMP", "SPORT-SEATS"})),
    # Still in dealers' systems, no longer built: ordering it is rejected.
    Model("ORION", "Orion", None, "SALOON", "DIESEL", frozenset({"WHEELS-17", "TOWBAR"}), available=False),
)}


def rejection(model_code: str, options: list[str]) -> tuple[str, str] | None:
    """(reason, detail) when the factory cannot build ``model_code`` with ``options``."""
    model = MODELS[model_code]  # the contract's enum guarantees a known code
    if not model.available:
        return "MODEL_DISCONTINUED", f"the {model.name} ({model.code}) is no longer built"
    offered = [o for o in options if o not in model.options]
    if offered:
        return "INVALID_OPTIONS", (f"option(s) {', '.join(offered)} not offered on the {model.name}; "
                                   f"offered: {', '.join(sorted(model.options))}")
    groups: dict[str, list[str]] = {}
    for code in options:
        group = OPTIONS[code].group
        if group:
            groups.setdefault(group, []).append(code)
    clashes = {g: codes for g, codes in groups.items() if len(codes) > 1}
    if clashes:
        return "INCOMPATIBLE_OPTIONS", "; ".join(f"at most one {g} option, got {', '.join(c)}"
                                                 for g, c in sorted(clashes.items()))
    return None


def describe() -> dict:
    """The catalogue as ``GET /catalogue`` shows it."""
    return {
        "models": [{"code": m.code, "name": m.name, "body": m.body, "powertrain": m.powertrain,
                    "status": "AVAILABLE" if m.available else "DISCONTINUED", "options": sorted(m.options)}
                   for m in MODELS.values()],
        "options": [{"code": o.code, "description": o.description, "exclusiveGroup": o.group}
                    for o in OPTIONS.values()],
    }
