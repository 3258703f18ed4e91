import pytest

from ._catalogue import check, shard


@pytest.mark.parametrize("name", shard(2))
async def test_scenario(name):
    await check(name)
