"""The core's defaults are the specification's figures, and its bounds are the
specification's ranges (``caas_core/settings.py``): what a deployment gets unless it says
otherwise."""

import pytest
from pydantic import ValidationError

from caas_core.settings import CoreSettings

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def test_the_ota_retry_policy_defaults_to_the_specifications():
    ota = CoreSettings().ota
    assert ota.backoff == (1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE)  # "1min, 5min, 15min, 30min"
    assert ota.attempt_timeout == 60.0                                        # "Timeout per attempt: 60 seconds"
    assert 3 <= ota.attempts <= 5


@pytest.mark.parametrize("attempts", [3, 4, 5])
def test_ota_attempts_are_configurable_from_3_to_5(attempts):
    assert CoreSettings(ota={"attempts": attempts}).ota.attempts == attempts


@pytest.mark.parametrize("attempts", [0, 1, 2, 6, 10])
def test_ota_attempts_outside_3_to_5_are_refused(attempts):
    with pytest.raises(ValidationError, match="attempts"):
        CoreSettings(ota={"attempts": attempts})


def test_the_factory_placement_defaults_to_the_specifications():
    factory = CoreSettings().factory
    assert factory.placement_timeout == 30.0           # "30-second timeout"
    assert factory.suspend_sales_after == 4 * HOUR     # Factory API: "Max 4 hours/month" of downtime


def test_subscription_billing_retries_three_times_with_exponential_backoff():
    billing = CoreSettings().billing
    assert billing.retries == 3                         # "Up to 3 attempts with exponential backoff"
    assert billing.backoff == (1 * DAY, 2 * DAY, 4 * DAY)
