"""Pytest fixtures: a running stack on ephemeral ports, in virtual time."""

from __future__ import annotations

import pytest

from caas_sim.simulators.kit.clock import Clock

from .stack import Stack


@pytest.fixture
async def running_stack(request):
    """A stack of every service; parametrize indirectly with a dict of Stack fields to change it."""
    params = getattr(request, "param", {}) or {}
    stack = Stack(clock=Clock("virtual"), **params)
    async with stack:
        yield stack
