"""The start-up heap, frozen out of the garbage collector's way.

A simulator starts with some fifty thousand long-lived container objects (modules,
compiled contracts, pydantic models, aiohttp's router) that never become garbage. The
cyclic collector walked all of them on every full pass, under load every few seconds:
passes of tens of milliseconds, the p99 of a request. ``gc.freeze()`` once the app has
started moves them to the permanent generation, which no pass walks; the cleanup thaws
them, so that a process running worlds one after another (tests, the demo) reclaims
what each world leaves behind.
"""

from __future__ import annotations

import gc

from aiohttp import web


def freeze_after_start(app: web.Application) -> None:
    app.on_startup.append(_freeze)
    app.on_cleanup.append(_thaw)


async def _freeze(_: web.Application) -> None:
    gc.freeze()


async def _thaw(_: web.Application) -> None:
    gc.unfreeze()
