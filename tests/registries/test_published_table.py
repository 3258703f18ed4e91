"""Each national registry as the specification's table publishes it (Administrative
Registration Integration, Country-Specific Implementations): the authority, how it is
reached, the documents it requires and its processing time in business days. The
per-country tests pin other ranges to draw dates they can name; these are the defaults
a registry serves with."""

import pytest

from caas_sim.simulators.registries import de, es, fr, uk
from caas_sim.simulators.registries.model import Method

TABLE = {
    es: ("Dirección General de Tráfico (DGT)", Method.SYNCHRONOUS, {"PURCHASE_CONTRACT", "TECHNICAL_SPECS"}, (2, 5)),
    fr: ("Agence Nationale des Titres Sécurisés (ANTS)", Method.SYNCHRONOUS,
         {"CERTIFICAT_CONFORMITE", "PROOF_OF_PURCHASE"}, (3, 7)),
    de: ("Kraftfahrt-Bundesamt (KBA)", Method.SEMI_AUTOMATED, {"FAHRZEUGBRIEF", "INSURANCE_PROOF"}, (1, 3)),
    uk: ("Driver and Vehicle Licensing Agency (DVLA)", Method.ASYNCHRONOUS,
         {"V5C_APPLICATION", "INSURANCE_CERTIFICATE"}, (5, 10)),
}


@pytest.mark.parametrize("module", TABLE, ids=lambda m: m.COUNTRY.code)
def test_each_registry_is_the_specifications_row(module):
    authority, method, documents, days = TABLE[module]
    country = module.COUNTRY
    assert country.authority == authority
    assert country.method is method
    assert set(country.required_documents) == documents
    assert country.processing_days == days
