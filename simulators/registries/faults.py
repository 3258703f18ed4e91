"""The registries' domain faults: what ``/__admin/faults`` validates a rule's ``params``
against, and their registration with a registry's fault table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from ..kit.delivery_faults import register_delivery_faults
from ..kit.faults import FaultEngine, NoParams
from .vocabulary import (
    CALLBACK_FAULTS,
    MAGIC_INFO_FIELDS,
    REJECTION_CODES,
    VALUE_FIELDS,
    Country,
    Method,
)


class ReasonParams(NoParams):
    code: Literal[REJECTION_CODES] = "OTHER"  # type: ignore[valid-type]
    reason: str = Field(default="Registration denied by the authority", min_length=1, max_length=500)


class OutageParams(NoParams):
    retry_after: int = Field(default=3600, ge=0, le=7 * 86400)


class InvalidDataParams(NoParams):
    field: str = Field(default="owner.taxId", min_length=1, max_length=64)
    message: str = Field(default="rejected by the authority's validation", min_length=1, max_length=500)


class DelayParams(NoParams):
    business_days: int = Field(default=5, ge=1, le=60)


def info_params(country: Country) -> type[NoParams]:
    fields = tuple(VALUE_FIELDS) + tuple(f"documents.{t}" for t in country.document_types)
    return create_model(  # the fields a country can ask for, checked when the rule is posted
        f"InfoParams{country.code}", __base__=NoParams,
        fields=(list[Literal[fields]],  # type: ignore[valid-type]
                Field(default=list(MAGIC_INFO_FIELDS), min_length=1)),
    )


def register_faults(faults: FaultEngine, country: Country) -> None:
    """The domain faults of one country's registry (the status callback's too, if it sends them)."""
    register = faults.register
    register("registration_rejected", "The authority rejects the registration with code and reason",
             ReasonParams)
    register("additional_info_required", "The authority asks for more information (fields)",
             info_params(country))
    register("registry_unavailable", "The registry answers 503: submit manually (retry_after seconds)",
             OutageParams)
    register("invalid_data", "The submission fails validation on field with message (422)", InvalidDataParams)
    register("processing_delay", "Processing takes business_days more than published", DelayParams)
    if country.method is Method.ASYNCHRONOUS:
        register_delivery_faults(faults, CALLBACK_FAULTS, "The status callback")
