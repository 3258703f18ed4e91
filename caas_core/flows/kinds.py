"""Kinds of durable jobs more than one flow enqueues (the handlers live in their flows)."""

ACTIVATE = "ota.activate"     # flows.ota.activate_job: push a purchase's feature to its vehicle (an attempt)
EXPIRE = "service.expire"      # flows.lifecycle.expire: a temporary service reached its end
DEACTIVATE = "ota.deactivate"  # flows.lifecycle.deactivate: switch a feature off in the vehicle
DEACTIVATE_TIMEOUT = "ota.deactivate_timeout"  # flows.lifecycle.deactivation_timeout: no callback in time
DEACTIVATE_GIVE_UP = "ota.deactivate_give_up"  # flows.lifecycle.deactivation_give_up: every attempt failed
CHARGE = "purchase.charge"     # flows.purchases.charge_job: take a one-time purchase's payment (deferred, crash)
