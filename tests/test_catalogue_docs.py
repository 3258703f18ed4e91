"""The tables of docs/bring-your-own-core.md that repeat the service catalogue say what it says.

A team writing its own core reads its ports and webhook receivers there, not in the code:
a service added to the catalogue and not to these tables would be invisible to it.
"""

from __future__ import annotations

import re
from pathlib import Path

from caas_sim import catalogue

DOC = Path(__file__).resolve().parent.parent / "docs" / "bring-your-own-core.md"


def _table(heading: str) -> list[list[str]]:
    """The cells of the first table under ``## heading``, header and rule left out."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_the_port_table_is_the_catalogues():
    documented = {row[0]: (row[1], row[2]) for row in _table("Ports") if re.fullmatch(r"[a-z][a-z0-9-]*", row[0])}
    expected = {e.name: (f"+{e.port - catalogue.CORE_PORT}", str(e.port)) for e in catalogue.SERVICES}
    wrong = {name: expected.get(name) for name in documented.keys() | expected.keys()
             if documented.get(name) != expected.get(name)}
    assert wrong == {}, f"{DOC.name}, ## Ports: these rows should read (offset, port) {wrong} (None: no row)"


def test_the_webhook_table_is_the_catalogues():
    senders = {row[0]: row[1].strip("`") for row in _table("Webhook targets")}
    assert senders == catalogue.WEBHOOK_SENDERS, f"{DOC.name}, ## Webhook targets: one row per sender of the catalogue"
