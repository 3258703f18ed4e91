"""VINs the factory stamps, taken from the API IoT fleet of the same seed.

A car built here must be a vehicle the IoT simulator knows (else every OTA
activation the core sends for it would be a 404), of the model that was
ordered. VINs are the IoT fleet's (``Fleet.vin_at``); indices are drawn from
a seeded permutation of the pool (offset + k * stride mod size, with stride
prime to size), so no two cars share a VIN until the pool is exhausted, and
the magic test serials (999900 and above) are never handed out.
"""

from __future__ import annotations

import math

from ..fleet import MAX_FLEET_SIZE, Fleet
from .timeline import unit

#: Serials from here up are the IoT fleet's magic test vehicles.
MAGIC_FLOOR = 999_900


class VinPool:
    def __init__(self, seed: int, size: int = MAX_FLEET_SIZE):
        self.size = min(int(size), MAGIC_FLOOR)
        if self.size < 100:
            raise ValueError(f"vin_pool_size must be at least 100, got {size}")
        self.fleet = Fleet(seed, min(int(size), MAX_FLEET_SIZE))
        self.offset = int(unit(seed, "vin-offset") * self.size)
        stride = 7919 + int(unit(seed, "vin-stride") * 100_000)
        while math.gcd(stride, self.size) != 1:
            stride += 1
        self.stride = stride
        self.drawn = 0

    def reset(self) -> None:
        self.drawn = 0

    def allocate(self, line: str) -> str:
        """The next unused VIN whose model-line letter (position 4) is ``line``."""
        # About one in seven VINs of the fleet is of any given line.
        while self.drawn < self.size:
            index = (self.offset + self.drawn * self.stride) % self.size
            self.drawn += 1
            vin = self.fleet.vin_at(index)
            if vin[3] == line:
                return vin
        raise RuntimeError(f"VIN pool exhausted: no VIN of model line {line!r} left among {self.size}")
