import pytest

from ._catalogue import check, shard


@pytest.mark.parametrize("name", shard(3))
async def test_scenario(name):
    await check(name)
