"""locust does not load a locustfile for ``--help``: docs/load-testing.md lists the
locustfiles' own options instead, and must list every one of them, with its variable."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFINED = re.compile(r'add_argument\(\s*"(--caas-[a-z-]+)",[^)]*?env_var="(CAAS_LOAD_[A-Z_]+)"', re.DOTALL)
LISTED = re.compile(r"^\| `(--caas-[a-z-]+)`[^|]*\| `(CAAS_LOAD_[A-Z_]+)` \|", re.MULTILINE)


def test_every_locustfile_option_is_listed_with_its_variable():
    defined = {m.groups() for path in (ROOT / "loadtests").glob("*.py") for m in DEFINED.finditer(path.read_text())}
    listed = set(LISTED.findall((ROOT / "docs" / "load-testing.md").read_text()))
    assert len(defined) >= 13
    assert listed == defined
