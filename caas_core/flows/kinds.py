"""Kinds of durable jobs more than one flow enqueues (the handlers live in their flows)."""

EXPIRE = "service.expire"      # flows.lifecycle.expire: a temporary service reached its end
DEACTIVATE = "ota.deactivate"  # flows.lifecycle.deactivate: switch a feature off in the vehicle
