import pytest

from scenarios.testing import running_stack  # noqa: F401  (the stack fixture)
