"""Key layout: every key of a shard carries that shard's hash tag (one Redis Cluster slot)."""

from __future__ import annotations

import re

import pytest

from sundial.core.keys import Keyspace, job_id_of_run_id, run_id_for_manual, run_id_for_slot

TAG = re.compile(r"\{([^}]*)\}")


def test_keys_of_one_job_share_a_hash_tag() -> None:
    keys = Keyspace("sundial", shards=4).for_job("0b6c1e5e-1111-4a4a-9c9c-123456789abc")
    job = "0b6c1e5e-1111-4a4a-9c9c-123456789abc"
    all_keys = [keys.entry(job), keys.due, keys.queue, keys.delayed, keys.delayed_runs, keys.active(job),
                keys.cancel, keys.manual]
    tags = {TAG.search(key).group(1) for key in all_keys}  # type: ignore[union-attr]
    assert tags == {f"sundial:{keys.shard}"}


def test_jobs_spread_over_shards_deterministically() -> None:
    space = Keyspace("sundial", shards=8)
    shards = {space.shard_of(f"job-{i}") for i in range(200)}
    assert shards == set(range(8))
    assert space.shard_of("job-1") == Keyspace("sundial", shards=8).shard_of("job-1")


def test_single_shard_layout_is_readable() -> None:
    keys = Keyspace().for_job("abc")
    assert (keys.entry("abc"), keys.due, keys.queue) == ("{sundial:0}:entry:abc", "{sundial:0}:due",
                                                          "{sundial:0}:queue")


@pytest.mark.parametrize("prefix", ["", "a b", "x{y}", "p:q"])
def test_rejects_prefixes_that_break_the_layout(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keyspace(prefix)


def test_run_ids_are_idempotent_per_slot() -> None:
    assert run_id_for_slot("job", 1_700_000_000_000) == "job:1700000000000"


JOB = "0b5e4f2c-7d1a-4c3e-9f6b-2a8d1e0c4b7a"


@pytest.mark.parametrize(("run_id", "job_id"), [
    (run_id_for_slot(JOB, 1_700_000_000_000), JOB),
    (run_id_for_manual(JOB, "abc123"), JOB),
    (run_id_for_slot(JOB.upper(), 1), JOB),  # as PostgreSQL would compare the uuid
    (JOB, None),  # no run part
    ("not-a-uuid:1700000000000", None),
    ("", None),
])
def test_a_run_id_names_its_job(run_id: str, job_id: str | None) -> None:
    assert job_id_of_run_id(run_id) == job_id
