import asyncio
import threading

import pytest

from caas_sim.scenarios.stack import Stack
from caas_sim.scenarios.testing import running_stack  # noqa: F401  (the stack fixture)
from tests.fuzzing import pytest_configure, pytest_runtest_call  # noqa: F401  (counts the fuzzers' cases)


@pytest.fixture(scope="module")
def threaded_stack(request):
    """A stack in a thread of its own, for synchronous clients such as schemathesis.
    Parametrize indirectly with Stack keyword arguments."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = Stack(**getattr(request, "param", {"services": ["iot"], "seed": 0}))
    asyncio.run_coroutine_threadsafe(stack.start(), loop).result(timeout=30)
    yield stack
    asyncio.run_coroutine_threadsafe(stack.stop(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
