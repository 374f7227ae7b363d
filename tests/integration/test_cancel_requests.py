"""A stop request (concurrencyPolicy Replace) lives exactly as long as the run it stops."""

from __future__ import annotations

import pytest

from sundial.core.broker import Broker

pytestmark = pytest.mark.services


async def test_a_stop_request_goes_when_its_run_is_acknowledged(broker: Broker) -> None:
    job_id, replaced, replacing = "job-a", "job-a:1000", "job-a:2000"
    # What the ticker's APPLY_PLANS writes when a Replace job fires over a run in flight.
    await broker.redis.hset(broker.keys.for_job(job_id).cancel, replaced, replacing)
    assert await broker.cancel_requests([(job_id, replaced)]) == {replaced: replacing}
    await broker.ack([], [(job_id, replaced)])
    assert await broker.cancel_requests([(job_id, replaced)]) == {}
    assert await broker.redis.exists(broker.keys.for_job(job_id).cancel) == 0, "nothing else is kept"
