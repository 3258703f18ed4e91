import pytest

from ._catalogue import check, shard


@pytest.mark.parametrize("name", shard(1))
async def test_scenario(name):
    await check(name)
