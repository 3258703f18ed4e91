"""The gateway's knobs, read from ``SimConfig.options`` (all optional).

Durations are seconds or text such as ``90s``, ``6h``, ``2d``; a range is
``[min, max]`` or ``"min..max"`` and each payment draws its own value in it
from the seed. Fees are basis points of the amount plus a fixed part in minor
units (of the payment's currency).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..kit.durations import parse_duration

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Settings:
    #: Capture to funds on the merchant account: cards T+6h..2d, bank transfers 1..3 days.
    card_settlement_delay: Range = (6 * 3600.0, 2 * 86400.0)
    bank_settlement_delay: Range = (86400.0, 3 * 86400.0)
    #: A refund request to its outcome (never before the payment has settled).
    refund_delay: Range = (3600.0, 86400.0)
    #: Settlement to the late events of the test cards and faults.
    chargeback_delay: float = 7 * 86400.0
    reversal_delay: float = 3 * 86400.0
    #: Clock time the issuer takes to answer an authorization (0: instant).
    authorization_latency: float = 0.0
    #: Refunds are refused this long after the payment.
    refund_window: float = 180 * 86400.0
    card_fee_bps: int = 140
    card_fee_fixed: int = 25
    bank_fee_bps: int = 0
    bank_fee_fixed: int = 35
    chargeback_fee: int = 1500
    #: Requests per window (0: no limit), window seconds, "client" (X-Client-Id) or "overall".
    rate_limit: int = 0
    rate_limit_window: float = 1.0
    rate_limit_scope: str = "client"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Settings:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"payments: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, raw in options.items():
            default = known[name].default
            try:
                if isinstance(default, tuple):
                    values[name] = _range(raw)
                elif isinstance(default, float):
                    values[name] = parse_duration(raw)
                elif isinstance(default, int):
                    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                        raise ValueError(f"expected a non-negative integer, got {raw!r}")
                    values[name] = raw
                else:
                    values[name] = str(raw)
            except ValueError as exc:
                raise ValueError(f"payments: option {name}: {exc}") from None
        return cls(**values)


def _range(raw: Any) -> Range:
    if isinstance(raw, str) and ".." in raw:
        raw = raw.split("..", 1)
    if isinstance(raw, (list, tuple)):
        if len(raw) != 2:
            raise ValueError(f"a range is [min, max], got {raw!r}")
        lo, hi = parse_duration(raw[0]), parse_duration(raw[1])
    else:
        lo = hi = parse_duration(raw)
    if lo > hi:
        raise ValueError(f"range minimum {lo:g} s is above its maximum {hi:g} s")
    return lo, hi
