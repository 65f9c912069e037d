"""The asyncio client: the same coordinator, the calls a service makes."""

from __future__ import annotations

import asyncio

import pytest

import dockyard
import dockyard.aio
from conftest import BOX, RECEPTOR


def test_asyncio_submit_watch_results_and_errors(cluster):
    async def go():
        async with dockyard.aio.Client(cluster.endpoint) as c:
            jobs = await asyncio.gather(*(c.submit(engine="sleep", count=3, sleep_ms=20) for _ in range(4)))
            assert len(set(jobs)) == 4
            seen = [e async for e in c.watch(jobs[0])]
            assert seen[-1].final and seen[-1].job.state == "succeeded"
            finals = await asyncio.gather(*(c.wait(j, timeout=60) for j in jobs))
            assert all(j.state == "succeeded" and j.tasks.succeeded == 3 for j in finals)
            with pytest.raises(dockyard.NotFound):
                await c.job("0000000000000000beef")
            with pytest.raises(dockyard.InvalidArgument):
                await c.submit(receptor=str(RECEPTOR), smiles=["CCO"], center=BOX["center"], size=(0, 0, 0))
            slow = await c.submit(engine="sleep", count=20, sleep_ms=2000)
            with pytest.raises(dockyard.DeadlineExceeded):
                await c.wait(slow, timeout=0.3)
            assert (await c.cancel(slow)).job_id == slow
            assert (await c.wait(slow, timeout=60)).state == "cancelled"
            assert any(n.node_id == "py-agent" for n in await c.nodes())
            df = await c.results(jobs[0])
            assert len(df) == 0 and "score" in df.columns

    asyncio.run(go())
