"""The functional blocks of the VSS maintenance plan.

The codes are the VSS contract's ``BlockCode`` values; ``display_name`` is the block's
name as the specification (and the VSS contract's ``BlockName``) writes it. ``parse``
accepts either, case-insensitively, plus a few harmless spellings ("Suspension and
Steering", "climate-control") so that settings can name blocks as people write them.
"""
from __future__ import annotations

import re
from enum import StrEnum


class Block(StrEnum):
    POWERTRAIN = "POWERTRAIN"
    SUSPENSION_STEERING = "SUSPENSION_STEERING"
    BRAKES = "BRAKES"
    ELECTRONICS = "ELECTRONICS"
    CLIMATE_CONTROL = "CLIMATE_CONTROL"
    DRIVETRAIN = "DRIVETRAIN"

    @property
    def display_name(self) -> str:
        return _NAMES[self]

    @classmethod
    def parse(cls, value: str | Block) -> Block:
        """The block named by a VSS code or name (``"Suspension & Steering"``)."""
        if isinstance(value, Block):
            return value
        if not isinstance(value, str):
            raise ValueError(f"not a functional block: {value!r}")  # noqa: TRY004 (a settings error)
        key = re.sub(r"[^A-Z0-9]+", "_", value.upper().replace("&", " ")).strip("_")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(f"{b.value} ({b.display_name})" for b in cls)
            raise ValueError(f"unknown functional block {value!r}; expected one of {names}") from None


_NAMES: dict[Block, str] = {
    Block.POWERTRAIN: "Powertrain",
    Block.SUSPENSION_STEERING: "Suspension & Steering",
    Block.BRAKES: "Brakes",
    Block.ELECTRONICS: "Electronics",
    Block.CLIMATE_CONTROL: "Climate Control",
    Block.DRIVETRAIN: "Drivetrain",
}

_ALIASES: dict[str, str] = {
    "SUSPENSION_AND_STEERING": "SUSPENSION_STEERING",
    "CLIMATE": "CLIMATE_CONTROL",
}
