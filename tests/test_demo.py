from scenarios.demo import run


async def test_the_demo_runs_clean_and_tells_its_story(capsys):
    assert await run(seed=2026) == 0  # non-zero when a contract was broken between core and simulators
    out = capsys.readouterr().out
    assert "refused 422: " in out and "VSS_UNAVAILABLE_ALLOWED" in out
    assert out.count(" ACTIVE ") >= 5 and "REFUNDED" in out and "support tickets: 2" in out
