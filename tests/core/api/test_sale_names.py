"""A sale's person names are checked as the contract checks them (ECMA-262 regular
expressions): what the contract accepts, the core's own model accepts too."""

import pytest
from pydantic import ValidationError

from caas_core.api.sales import CustomerCorrections


@pytest.mark.parametrize("name", ["García", "O'Neill-Smith", "a#\x85", "Ana\u00a0María"])
def test_a_name_the_contract_accepts_is_accepted(name):
    """U+0085 is white space to Python's and Rust's ``\\s``, not to ECMA-262's: a schemathesis
    case whose last name ended in it got 400 after passing the contract."""
    assert CustomerCorrections(lastName=name).lastName == name


@pytest.mark.parametrize("name", [" Ana", "Ana ", "Ana\t", "\u3000Ana", "Ana\ufeff"])
def test_a_name_with_white_space_at_an_end_is_refused(name):
    with pytest.raises(ValidationError):
        CustomerCorrections(lastName=name)
