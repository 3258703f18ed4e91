"""``caas-sim bench sim --instructions``: instructions per request, counted by callgrind."""

import shutil

import pytest

from caas_sim.scenarios import bench_client
from caas_sim.scenarios.bench_instructions import per_request, total_instructions
from caas_sim.scenarios.cli import main

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
cmd:  python -m caas_sim.scenarios.bench_server --kind echo
positions: line
events: Ir
fl=(1) ???
fn=(1) 0x0000000000021f20
0 4
summary: 221524751
"""


def test_a_dumps_total_is_read_from_its_summary_or_totals_line():
    assert total_instructions(DUMP) == 221524751
    assert total_instructions(DUMP.replace("summary:", "totals:")) == 221524751
    with pytest.raises(ValueError, match="not a callgrind dump"):
        total_instructions("events: Ir\n0 4\n")


def test_without_valgrind_the_option_is_refused_before_anything_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert main(["bench", "sim", "--instructions"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "caas-sim: error: bench --instructions: valgrind, callgrind_control not on PATH " \
                          "(Debian: apt-get install valgrind)"


@pytest.mark.skipif(shutil.which("callgrind_control") is None, reason="valgrind is not installed")
@pytest.mark.timeout(600)  # a Python server starts some fifty times slower under callgrind
def test_the_echo_is_counted_per_request_between_a_zeroing_and_a_dump():
    def make(url: str) -> bench_client.RequestMaker:
        request = bench_client.http_request("GET", url.split("//", 1)[1], "/vehicles/x/status")
        return lambda _: request

    # start-up (the imports: some two billion instructions) is left out: what is left is
    # the echo's work per request, a few hundred thousand instructions
    assert 50_000 < per_request("echo", (), make, {202}, requests=50, warm_up=10) < 2_000_000
