"""The `sundial` CLI against the real PostgreSQL and Redis, with no cluster reachable.

History is written with fixed times so the tables are asserted line for line, as a person
reads them. Kubernetes is "down" the realistic way: a kubeconfig whose API server port has
nothing listening, so every command that can falls back to PostgreSQL and says so.
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner, Result

from sundial.cli.describe import describe_lines
from sundial.cli.jobs import JobView
from sundial.cli.main import cli
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.jobs import arm_job, disarm_job, run_now
from sundial.core.keys import Keyspace
from sundial.core.migrate import discover
from sundial.core.pools import LAUNCHER_POOL, pool_keyspace
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.schedule import fire_times, parse_schedule
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import FireRecord, RunRecord, Store
from sundial.devstack.services import free_port
from tests.integration.engine import armed

# Every migration file, whatever other changes add: the tests follow the schema, not a number.
LATEST_SCHEMA = discover()[-1].version
pytestmark = pytest.mark.services

ZONE = "America/Sao_Paulo"
SCHEDULE = "0 9 1 1 *"  # yearly: its next fire times do not move while a test runs


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class History:
    job: JobRef
    spec: ScheduledJobSpec


@pytest.fixture
def dead_kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig whose API server is a port nobody listens on."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "gone", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone", "namespace": "default"}}],
    }))
    return str(path)


@pytest.fixture
def dead_url() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
async def history(store: Store) -> History:
    """A job with a morning of history: a skipped slot, a success, a retried failure, a manual run."""
    job_id = str(uuid.uuid4())
    job = JobRef(job_id, f"cli-{job_id[:8]}", "nightly-report")
    spec = ScheduledJobSpec.model_validate({
        "target": "report", "schedule": SCHEDULE, "timeZone": ZONE, "concurrencyPolicy": "Forbid",
        "params": {"format": "pdf"},
    })
    await store.upsert_job(job, spec, 1, utc("2026-01-01T12:00:00"))

    def record(slot: str | None, logical: str, trigger: Trigger, status: RunStatus, attempt: int = 1,
               ms: int | None = None, **extra: Any) -> RunRecord:
        run_id = f"{job_id}:manual:abc123" if slot is None else f"{job_id}:{to_ms(utc(slot))}"
        started = utc(logical) + timedelta(seconds=attempt - 1) if status is not RunStatus.SKIPPED else None
        ended = started + timedelta(milliseconds=ms) if started and ms is not None else utc(logical)
        return RunRecord(
            run_id=run_id, job_id=job_id, logical_time=utc(logical), scheduled_for=utc(slot) if slot else None,
            trigger=trigger, status=status, attempt=attempt, started_at=started, completed_at=ended, duration_ms=ms,
            worker="worker-a" if started else None, **extra,
        )

    await store.record_runs([
        record("2025-01-15T11:00:00", "2025-01-15T11:00:00", Trigger.SCHEDULED, RunStatus.SKIPPED,
               error="skipped by concurrencyPolicy Forbid: run 1736938800000 is still in flight"),
        record("2025-01-15T12:00:00", "2025-01-15T12:00:00", Trigger.SCHEDULED, RunStatus.SUCCESS, ms=1234),
        record("2025-01-15T13:00:00", "2025-01-15T13:00:00", Trigger.SCHEDULED, RunStatus.FAILED, ms=300,
               error="boom\nTraceback (most recent call last): ...", next_retry_at=utc("2025-01-15T13:00:05")),
        record("2025-01-15T13:00:00", "2025-01-15T13:00:00", Trigger.RETRY, RunStatus.FAILED, attempt=2, ms=2500,
               error="ConnectionError: upstream refused the connection to https://reports.example.com/render"),
        record(None, "2025-01-15T14:30:00", Trigger.MANUAL, RunStatus.SUCCESS, ms=850, reason="ticket-7"),
    ])
    return History(job, spec)


def invoke(args: list[str], **env: str | None) -> Result:
    environment: dict[str, str | None] = {
        "DATABASE_URL": None, "REDIS_URL": None, "SUNDIAL_REDIS_PREFIX": None, "KUBECONFIG": None,
        "NO_COLOR": "1", **env,
    }
    return CliRunner().invoke(cli, args, env=environment, catch_exceptions=False)


# ---- runs ------------------------------------------------------------------------------------

RUNS_TABLE = [
    "SLOT                      TRIGGER     STATUS             ATTEMPT   DURATION   ERROR",
    "2025-01-15 11:30:00 -03   Manual      Succeeded          1/3       850ms",
    "2025-01-15 10:00:00 -03   Retry       Failed             2/3       2.5s       "
    "ConnectionError: upstream refused the connection to https:/…",
    "2025-01-15 10:00:00 -03   Scheduled   Failed, Retrying   1/3       300ms      boom",
    "2025-01-15 09:00:00 -03   Scheduled   Succeeded          1/3       1.2s",
    "2025-01-15 08:00:00 -03   Scheduled   Skipped            1/3       -          "
    "skipped by concurrencyPolicy Forbid: run 1736938800000 is s…",
]


LATEST_TWO_IN_NAMESPACE = [
    "JOB              SLOT                      TRIGGER   STATUS      ATTEMPT   DURATION   ERROR",
    "nightly-report   2025-01-15 11:30:00 -03   Manual    Succeeded   1/3       850ms",
    "nightly-report   2025-01-15 10:00:00 -03   Retry     Failed      2/3       2.5s       "
    "ConnectionError: upstream refused the connection to https:/…",
]


def test_runs_falls_back_to_the_database_and_prints_a_table(
    history: History, database_url: str, dead_kubeconfig: str
) -> None:
    job = history.job
    result = invoke(["runs", job.name, "-n", job.namespace], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == RUNS_TABLE
    assert re.fullmatch(
        rf"note: Kubernetes API at https://127\.0\.0\.1:\d+ is unreachable: .+; "
        rf"resolved {job.namespace}/{job.name} from the database instead\n",
        result.stderr,
    ), result.stderr


def test_runs_filters_by_status_and_limits(history: History, database_url: str, dead_kubeconfig: str) -> None:
    base = ["runs", history.job.name, "-n", history.job.namespace, "--kubeconfig", dead_kubeconfig,
            "--database-url", database_url]
    failed = invoke([*base, "--status", "Failed"])
    assert failed.stdout.splitlines() == [RUNS_TABLE[0], RUNS_TABLE[2], RUNS_TABLE[3]]
    both = invoke([*base, "--status", "skipped", "--status", "Succeeded", "--limit", "2"])
    assert both.stdout.splitlines() == [
        "SLOT                      TRIGGER     STATUS      ATTEMPT   DURATION   ERROR",
        "2025-01-15 11:30:00 -03   Manual      Succeeded   1/3       850ms",
        "2025-01-15 09:00:00 -03   Scheduled   Succeeded   1/3       1.2s",
    ]
    none = invoke([*base, "--status", "TimedOut"])
    assert (none.exit_code, none.stdout) == (0, "")
    assert f"No runs found for {history.job.namespace}/{history.job.name}." in none.stderr


def test_runs_wide_shows_run_ids_workers_and_reasons(
    history: History, database_url: str, dead_kubeconfig: str
) -> None:
    result = invoke(["runs", history.job.name, "-n", history.job.namespace, "-o", "wide", "--limit", "2"],
                    DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert result.stdout.splitlines() == [
        "RUN             SLOT                      TRIGGER   STATUS      ATTEMPT   STARTED                   "
        "DURATION   WORKER     REASON     ERROR",
        "manual:abc123   2025-01-15 11:30:00 -03   Manual    Succeeded   1/3       2025-01-15 11:30:00 -03   "
        "850ms      worker-a   ticket-7",
        "1736946000000   2025-01-15 10:00:00 -03   Retry     Failed      2/3       2025-01-15 10:00:01 -03   "
        "2.5s       worker-a   -          ConnectionError: upstream refused the connection to https:/…",
    ]


def test_runs_as_json_and_yaml(history: History, database_url: str, dead_kubeconfig: str) -> None:
    args = ["runs", history.job.name, "-n", history.job.namespace, "--limit", "3"]
    as_json = json.loads(invoke([*args, "-o", "json"], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig).stdout)
    as_yaml = yaml.safe_load(invoke([*args, "-o", "yaml"], DATABASE_URL=database_url,
                                    KUBECONFIG=dead_kubeconfig).stdout)
    assert as_json == as_yaml
    assert [run["attempt"] for run in as_json] == [1, 2, 1]
    retried = as_json[2]
    assert retried == {
        "runId": f"{history.job.job_id}:1736946000000",
        "namespace": history.job.namespace,
        "job": "nightly-report",
        "jobId": history.job.job_id,
        "slot": "2025-01-15T13:00:00Z",
        "logicalTime": "2025-01-15T13:00:00Z",
        "trigger": "Scheduled",
        "status": "Failed",
        "attempt": 1,
        "maxAttempts": 3,
        "startedAt": "2025-01-15T13:00:00Z",
        "completedAt": "2025-01-15T13:00:00.300000Z",
        "durationMs": 300,
        "worker": "worker-a",
        "reason": None,
        "error": "boom\nTraceback (most recent call last): ...",
        "nextRetryAt": "2025-01-15T13:00:05Z",
        "deliveries": 1,
        "output": None,
    }


def test_runs_of_a_whole_namespace_and_of_all(history: History, database_url: str, dead_kubeconfig: str) -> None:
    namespace = history.job.namespace
    listing = invoke(["runs", "-n", namespace, "--limit", "2"], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert listing.stdout.splitlines() == LATEST_TWO_IN_NAMESPACE
    everywhere = invoke(["runs", "-A", "--limit", "10000", "-o", "json"], DATABASE_URL=database_url,
                        KUBECONFIG=dead_kubeconfig)
    ours = [run for run in json.loads(everywhere.stdout) if run["namespace"] == namespace]
    assert len(ours) == 5
    table = invoke(["runs", "-A", "--limit", "10000"], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert table.stdout.splitlines()[0].split()[:3] == ["NAMESPACE", "JOB", "SLOT"]
    assert sum(1 for line in table.stdout.splitlines() if line.startswith(namespace)) == 5


def test_runs_usage_and_lookup_errors(history: History, database_url: str, dead_kubeconfig: str) -> None:
    # No DATABASE_URL: the cluster is the only source, and it did not answer.
    missing_db = invoke(["runs", "x"], KUBECONFIG=dead_kubeconfig)
    assert missing_db.exit_code == 1
    assert "is unreachable" in missing_db.stderr
    both = invoke(["runs", "x", "-A"], DATABASE_URL=database_url)
    assert both.exit_code == 2
    assert "a NAME cannot be combined with -A/--all-namespaces" in both.stderr
    bad_status = invoke(["runs", "x", "--status", "broken"], DATABASE_URL=database_url)
    assert bad_status.exit_code == 2
    unknown = invoke(["runs", "no-such-job", "-n", history.job.namespace], DATABASE_URL=database_url,
                     KUBECONFIG=dead_kubeconfig)
    assert unknown.exit_code == 1
    assert f"the database has no job no-such-job in namespace {history.job.namespace} either" in unknown.stderr
    no_config = invoke(["runs", history.job.name, "-n", history.job.namespace], DATABASE_URL=database_url,
                       KUBECONFIG=str(Path(dead_kubeconfig).with_name("absent")))
    assert no_config.exit_code == 0
    assert no_config.stderr.startswith("note: no Kubernetes configuration")
    explicit_missing = invoke(["runs", "x", "--kubeconfig", "/nonexistent/kubeconfig"], DATABASE_URL=database_url)
    assert explicit_missing.exit_code == 1
    assert "kubeconfig /nonexistent/kubeconfig does not exist" in explicit_missing.stderr
    db_down = invoke(["runs", history.job.name], DATABASE_URL="postgresql://sundial@127.0.0.1:1/sundial",
                     KUBECONFIG=dead_kubeconfig)
    assert db_down.exit_code == 1
    assert "PostgreSQL at postgresql://sundial@127.0.0.1:1/sundial is unreachable" in db_down.stderr


# ---- describe --------------------------------------------------------------------------------


async def test_describe_lines_for_a_job_known_only_to_the_database(history: History, store: Store) -> None:
    row = await store.job(history.job.job_id)
    assert row is not None
    runs = await store.runs(history.job.job_id, limit=3)
    job = JobView.from_row(row)
    now = utc("2025-01-15T15:00:00")
    assert describe_lines(job, row, runs, now) == [
        "Name:       nightly-report",
        f"Namespace:  {history.job.namespace}",
        f"UID:        {history.job.job_id}",
        "Source:     PostgreSQL (Kubernetes unreachable)",
        "Spec:",
        "  Schedule:            0 9 1 1 * (America/Sao_Paulo)",
        "  Target:              report",
        '  Params:              {"format": "pdf"}',
        "  Suspend:             false",
        "  Concurrency Policy:  Forbid",
        "  Timeout:             300s",
        "  Retry:               3 attempts, exponential backoff from 5s (at most 3600s)",
        "  Missed Run Policy:   RunOnce",
        "  History Limits:      100 succeeded, 200 failed",
        "  Category:            system",
        "Status:",
        "  Last Status:   Succeeded",
        "  Last Run:      2025-01-15 11:30:00 -03 (29m ago)",
        "  Last Success:  2025-01-15 11:30:00 -03 (29m ago)",
        "  Next Run:      2026-01-01 09:00:00 -03 (in 350d)",
        "  Runs:          4 total, 2 succeeded, 2 failed, 0 missed",
        "  Active:        none",
        "Next 5 Fire Times (America/Sao_Paulo):",
        "  2026-01-01 09:00:00 -03   in 350d",
        "  2027-01-01 09:00:00 -03   in 715d",
        "  2028-01-01 09:00:00 -03   in 2y",
        "  2029-01-01 09:00:00 -03   in 3y",
        "  2030-01-01 09:00:00 -03   in 4y",
        "Last Runs:",
        *["  " + line for line in RUNS_TABLE[:4]],
    ]


def test_describe_command_shows_next_fire_times_and_runs(
    history: History, database_url: str, dead_kubeconfig: str
) -> None:
    result = invoke(["describe", history.job.name, "-n", history.job.namespace, "--runs", "2"],
                    DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    heading = lines.index("Next 5 Fire Times (America/Sao_Paulo):")
    expected = fire_times(parse_schedule(SCHEDULE, ZONE), SYSTEM_CLOCK.now(), 5)
    shown = [line.split("   ")[0].strip() for line in lines[heading + 1: heading + 6]]
    zone = parse_schedule(SCHEDULE, ZONE).zone
    assert shown == [f"{moment.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}" for moment in expected]
    assert lines[lines.index("Last Runs:") + 1:] == ["  " + line.removeprefix("JOB              ")
                                                     .removeprefix("nightly-report   ")
                                                     for line in LATEST_TWO_IN_NAMESPACE]


def test_describe_without_database_still_describes_nothing_it_cannot_reach(dead_kubeconfig: str) -> None:
    result = invoke(["describe", "anything"], KUBECONFIG=dead_kubeconfig)
    assert result.exit_code == 1
    assert "Error: Kubernetes API at https://127.0.0.1:" in result.stderr


# ---- next, migrate ---------------------------------------------------------------------------


def test_next_prints_fire_times_in_the_zone() -> None:
    result = invoke(["next", "0 9 * * 1-5", "--tz", ZONE, "--count", "3", "--after", "2025-01-17T00:00"])
    assert (result.exit_code, result.stdout.splitlines()) == (0, [
        "2025-01-17T09:00:00-03:00", "2025-01-20T09:00:00-03:00", "2025-01-21T09:00:00-03:00"])
    bad = invoke(["next", "61 * * * *"])
    assert bad.exit_code == 2
    assert "invalid minute field '61'" in bad.stderr


def test_next_n_is_a_namespace_as_everywhere_else(dead_kubeconfig: str) -> None:
    on_expression = invoke(["next", "@daily", "-n", "batch"])
    assert on_expression.exit_code == 2
    assert "apply to a job NAME, not an expression" in on_expression.stderr
    # A bare name is a ScheduledJob, looked up in -n's namespace through Kubernetes.
    job = invoke(["next", "nightly-report", "-n", "batch"], KUBECONFIG=dead_kubeconfig)
    assert job.exit_code == 1
    assert "Error: Kubernetes API at https://127.0.0.1:" in job.stderr


# ---- kubectl conventions: -o, --version, completion, --as, --request-timeout -----------------


def test_runs_output_name(history: History, database_url: str, dead_kubeconfig: str) -> None:
    result = invoke(["runs", history.job.name, "-n", history.job.namespace, "--limit", "2", "-o", "name"],
                    DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    # As `kubectl get scheduledjobruns -o name` names them: job, logical time in ms, attempt.
    assert result.stdout.splitlines() == [f"scheduledjobrun.runs.sundial.dev/{history.job.name}-1736951400000-1",
                                          f"scheduledjobrun.runs.sundial.dev/{history.job.name}-1736946000000-2"]


def test_describe_output_is_the_object(history: History, database_url: str, dead_kubeconfig: str) -> None:
    base = ["describe", history.job.name, "-n", history.job.namespace]
    obj = json.loads(invoke([*base, "-o", "json"], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig).stdout)
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["uid"]) == (
        "sundial.dev/v1alpha1", "ScheduledJob", history.job.job_id)
    assert obj["spec"]["schedule"] == SCHEDULE
    named = invoke([*base, "-o", "name"], DATABASE_URL=database_url, KUBECONFIG=dead_kubeconfig)
    assert named.stdout == f"scheduledjob.sundial.dev/{history.job.name}\n"


def test_every_command_that_prints_objects_takes_o() -> None:
    for command in ("runs", "describe", "run", "suspend", "resume"):
        help_text = invoke([command, "--help"]).stdout
        assert "-o, --output" in help_text, command
        assert "name|json|yaml" in help_text or "json|yaml|name" in help_text, command
    assert "table|wide|json|yaml|name" in invoke(["runs", "--help"]).stdout


def test_version() -> None:
    from sundial.core.build import sundial_version

    result = invoke(["--version"])
    assert (result.exit_code, result.stdout) == (0, f"cli {sundial_version()}\n")


def test_completion_scripts_and_kubectl_plugin_completion() -> None:
    from sundial.cli.completion import kubectl_completions

    bash = invoke(["completion", "bash"])
    assert bash.exit_code == 0
    assert "_SUNDIAL_COMPLETE=bash_complete" in bash.stdout
    assert "_KUBECTL_SUNDIAL_COMPLETE" in invoke(["completion", "zsh", "--prog-name", "kubectl-sundial"]).stdout
    assert invoke(["completion", "tcsh"]).exit_code == 2
    assert kubectl_completions(cli, ["__complete", "ru"]) == [
        "run\tRun a job now; --wait follows it to its end.", "runs\tRun history of a job (or of a namespace).", ":4"]
    assert "--request-timeout\tHow long to wait for each Kubernetes API request (30s, 1m; 0 waits forever)." in (
        kubectl_completions(cli, ["__complete", "describe", "--req"]))
    # Job names come from the cluster; with none reachable there are simply none.
    assert kubectl_completions(cli, ["__complete", "describe", "--kubeconfig", "/nonexistent", ""]) == [":4"]


def test_as_and_request_timeout_are_checked_like_kubectl(dead_kubeconfig: str) -> None:
    from sundial.cli.kube import KubeOptions, parse_request_timeout

    assert [parse_request_timeout(text) for text in ("0", "5", "1.5", "30s", "1m30s", "2h", "250ms")] == [
        0, 5, 1.5, 30, 90, 7200, 0.25]
    for bad in ("soon", "1d", "-1s", "5 s"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_request_timeout(bad)
    result = invoke(["suspend", "x", "--request-timeout", "soon"], KUBECONFIG=dead_kubeconfig)
    assert result.exit_code == 2
    assert "Invalid value for '--request-timeout'" in result.stderr
    assert KubeOptions(request_timeout=0).timeout.read is None, "0 waits forever"
    assert KubeOptions(request_timeout=2).timeout.read == 2
    assert KubeOptions(impersonate_user="alice", impersonate_groups=("a", "b")).impersonation_headers == [
        ("Impersonate-User", "alice"), ("Impersonate-Group", "a"), ("Impersonate-Group", "b")]
    lonely = invoke(["suspend", "x", "--as-group", "ops"], KUBECONFIG=dead_kubeconfig)
    assert lonely.exit_code == 1
    assert "--as-group needs --as" in lonely.stderr


def test_migrate_applies_once_then_reports_up_to_date(database_url: str) -> None:
    fresh = _fresh_database(database_url)
    first = invoke(["migrate"], DATABASE_URL=fresh)
    applied = "".join(f"applied {migration.name}\n" for migration in discover())
    assert applied.startswith("applied 0001_init\napplied 0002_runs_by_run_id\n")
    assert (first.exit_code, first.stdout) == (0, applied)
    again = invoke(["migrate", "--database-url", fresh])
    assert (again.exit_code, again.stdout) == (0, "database schema is up to date\n")
    down = invoke(["migrate"], DATABASE_URL="postgresql://sundial@127.0.0.1:1/sundial")
    assert down.exit_code == 1
    assert "is unreachable" in down.stderr


def _fresh_database(database_url: str) -> str:
    name = f"cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url.rsplit("/", 1)[0] + f"/{name}"


# ---- doctor ----------------------------------------------------------------------------------


def _doctor(database_url: str | None, redis_url: str | None, prefix: str, kubeconfig: str) -> Result:
    return invoke(["doctor", "--kubeconfig", kubeconfig], DATABASE_URL=database_url, REDIS_URL=redis_url,
                  SUNDIAL_REDIS_PREFIX=prefix)


def _line(result: Result, check: str) -> str:
    return next(line for line in result.stdout.splitlines() if line[7:].startswith(check + " "))


def test_doctor_with_everything_down(dead_kubeconfig: str, dead_url: str) -> None:
    result = _doctor(f"postgresql://sundial@{dead_url}/sundial", f"redis://{dead_url}/0", "sundial", dead_kubeconfig)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line[:23].rstrip() for line in lines if not line.startswith(" ")][:-1] == [
        "FAIL   Kubernetes API", "SKIP   CRD", "FAIL   PostgreSQL", "SKIP   Schema", "FAIL   Redis",
        "SKIP   Workers", "SKIP   Targets", "SKIP   Clocks", "SKIP   Queue", "SKIP   Dead letters",
        "SKIP   Missed slots",
    ]
    assert lines[-1] == "3 FAIL, 8 SKIP"
    assert _line(result, "PostgreSQL").startswith(
        f"FAIL   PostgreSQL      postgresql://sundial@{dead_url}/sundial is unreachable: ")
    assert _line(result, "Redis").startswith(f"FAIL   Redis           redis://{dead_url}/0 is unreachable: ")
    hints = [line.strip() for line in lines if line.startswith(" ")]
    assert hints == [
        "hint: is the cluster up and the kubeconfig current?",
        "hint: check DATABASE_URL, the server and the network path to it",
        "hint: check REDIS_URL, the server and the network path to it",
    ]


async def test_doctor_with_backends_up_and_a_live_worker(
    database_url: str, redis_url: str, broker: Broker, keyspace: Keyspace, dead_kubeconfig: str
) -> None:
    now_ms = to_ms(SYSTEM_CLOCK.now())
    await broker.heartbeat_worker("w-1", WorkerHeartbeat(seen_ms=now_ms, targets=("noop", "sleep"), concurrency=5,
                                          in_flight=2))
    await broker.heartbeat_worker("w-2", WorkerHeartbeat(seen_ms=now_ms, targets=("noop",), concurrency=5,
                                          in_flight=0))
    await broker.heartbeat_worker("w-old", WorkerHeartbeat(seen_ms=now_ms - 120_000, targets=("noop",)))
    result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
    assert result.exit_code == 1, "the cluster is still down"
    assert re.fullmatch(r"OK     PostgreSQL      postgresql://sundial@127\.0\.0\.1:\d+/sundial \(PostgreSQL [\d.]+\)",
                        _line(result, "PostgreSQL"))
    assert _line(result, "Schema") == f"OK     Schema          version {discover()[-1].version} (up to date)"
    redis_line = rf"OK     Redis           redis://127\.0\.0\.1:\d+/0 \(Redis [\d.]+, prefix '{keyspace.prefix}'\)"
    assert re.fullmatch(redis_line, _line(result, "Redis"))
    assert _line(result, "Workers") == (
        "OK     Workers         2 live: w-1 (2/5 busy), w-2 (0/5 busy) (1 more not seen for over 30s)")
    targets = _line(result, "Targets")
    assert targets == "OK     Targets         offered: noop, sleep (1/2)"
    assert re.fullmatch(r"OK     Clocks          this machine is \d+ms from Redis's clock; "
                        r"worker heartbeats \d+\.\ds to \d+\.\ds old", _line(result, "Clocks"))
    assert _line(result, "Dead letters") == "OK     Dead letters    none"
    assert _line(result, "Missed slots") == "OK     Missed slots    none in the last 15m"
    assert await broker.live_workers(now_ms, 10**15), "doctor forgets no worker record"


async def _doctor_async(database_url: str | None, redis_url: str | None, prefix: str, kubeconfig: str) -> Result:
    # The CLI runs its own event loop; keep it off the test's.
    import asyncio

    return await asyncio.to_thread(_doctor, database_url, redis_url, prefix, kubeconfig)


async def test_doctor_flags_unserved_targets_and_skewed_clocks(
    database_url: str, redis_url: str, broker: Broker, keyspace: Keyspace, store: Store, dead_kubeconfig: str
) -> None:
    job_id = str(uuid.uuid4())
    job = JobRef(job_id, f"cli-{job_id[:8]}", "needs-report")
    await arm_job(broker, store, job, ScheduledJobSpec.model_validate(
        {"target": "report-nobody-offers", "schedule": "@daily", "timeZone": "UTC"}), 1, SYSTEM_CLOCK.now())
    now_ms = to_ms(SYSTEM_CLOCK.now())
    await broker.heartbeat_worker("ahead", WorkerHeartbeat(seen_ms=now_ms + 3_000, targets=("noop",)))
    result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
    targets = _line(result, "Targets")
    assert targets.startswith("FAIL   Targets         jobs use targets no live worker offers (")
    assert f"report-nobody-offers: {job.namespace}/needs-report" in targets
    clocks = _line(result, "Clocks")
    assert re.fullmatch(r"WARN   Clocks          worker ahead is at least [23]\.\ds ahead of Redis", clocks), clocks

    await broker.heartbeat_worker("ahead", WorkerHeartbeat(seen_ms=now_ms + 12_000, targets=("noop",)))
    result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
    assert _line(result, "Clocks").startswith("FAIL   Clocks          worker ahead is at least 1")
    await disarm_job(broker, store, job_id, retain_history=False)


async def test_doctor_shows_the_launcher_pool_its_workers_and_its_queue_lag(
    database_url: str, redis_url: str, broker: Broker, keyspace: Keyspace, store: Store, dead_kubeconfig: str
) -> None:
    job = JobRef(str(uuid.uuid4()), f"cli-{uuid.uuid4().hex[:8]}", "container-job")
    template = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
    await arm_job(broker, store, job, ScheduledJobSpec.model_validate(
        {"jobTemplate": template, "schedule": "@daily", "timeZone": "UTC"}), 1, SYSTEM_CLOCK.now())
    launcher = broker.for_keyspace(pool_keyspace(keyspace, LAUNCHER_POOL))
    try:
        result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
        assert "FAIL   Workers         launcher pool: no live workers; 1 jobs armed here wait for nobody" in (
            result.stdout.splitlines())
        assert "OK     Queue           launcher pool: 0 runs waiting for a worker, the oldest for 0.0s" in (
            result.stdout.splitlines())

        now_ms = to_ms(SYSTEM_CLOCK.now())
        await launcher.heartbeat_worker("l-1", WorkerHeartbeat(seen_ms=now_ms, targets=("sundial:kubernetes-job",),
                                                               concurrency=100, in_flight=0))
        await launcher.ensure_groups()
        queue = launcher.keys.for_job(job.job_id).queue
        await launcher.redis.xadd(queue, {"run": "waiting a minute"}, id=f"{now_ms - 60_000}-0")
        result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
        lines = result.stdout.splitlines()
        assert "OK     Workers         launcher pool: 1 live: l-1 (0/100 busy)" in lines
        lag = next(line for line in lines if line.startswith("WARN   Queue           launcher pool: "))
        assert re.fullmatch(r"WARN   Queue {11}launcher pool: 1 runs waiting for a worker, the oldest for 6\d\.\ds",
                            lag), lag
        assert "the launcher pool's workers cannot keep up: add launcher replicas" in result.stdout
        assert _line(result, "Queue").startswith("OK     Queue           0 runs waiting"), "the default pool apart"
    finally:
        await disarm_job(broker, store, job.job_id, retain_history=False)


async def test_doctor_names_the_jobs_of_its_deployment_that_missed_slots_lately(
    database_url: str, redis_url: str, broker: Broker, keyspace: Keyspace, store: Store, dead_kubeconfig: str
) -> None:
    """Slots the ticker recorded missed (a full queue, a run that would start past its deadline,
    the missed-run policy) show here; a job armed under another prefix, or missed long ago, does not."""
    now = SYSTEM_CLOCK.now()
    ours, older = [await armed(broker, store, now, name=name) for name in ("missing", "missed-long-ago")]
    other_broker = Broker.from_url(redis_url, Keyspace(f"other{uuid.uuid4().hex[:6]}"))
    theirs = await armed(other_broker, store, now, name="missing-elsewhere")
    try:
        await store.record_fires([FireRecord(job.job_id, now + timedelta(seconds=1), now, missed)
                                  for (job, _), missed in ((ours, 3), (older, 1), (theirs, 2))])
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("UPDATE scheduled_jobs SET last_missed_at = now() - interval '16 minutes'"
                               " WHERE id = %s", (older[0].job_id,))
        result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
        job = ours[0]
        missed = _line(result, "Missed slots")
        assert re.fullmatch(r"WARN   Missed slots    1 job had slots recorded missed in the last 15m, "
                            rf"the latest \ds ago: {job.namespace}/{job.name} \(3 in all\)", missed), missed
        assert "hint: workers down or too few to keep up (see Workers and Queue)" in result.stdout

        await disarm_job(broker, store, job.job_id, retain_history=False)
        result = await _doctor_async(database_url, redis_url, keyspace.prefix, dead_kubeconfig)
        assert _line(result, "Missed slots") == "OK     Missed slots    none in the last 15m"
    finally:
        for broker_of, (job, _) in ((broker, older), (other_broker, theirs)):
            await disarm_job(broker_of, store, job.job_id, retain_history=False)
        await other_broker.close()


def test_doctor_reports_a_missing_schema_and_json(redis_url: str, database_url: str, dead_kubeconfig: str) -> None:
    fresh = _fresh_database(database_url)
    result = invoke(["doctor", "-o", "json", "--kubeconfig", dead_kubeconfig], DATABASE_URL=fresh,
                    REDIS_URL=redis_url, SUNDIAL_REDIS_PREFIX=f"empty{uuid.uuid4().hex[:6]}")
    assert result.exit_code == 1
    checks = {check["name"]: check for check in json.loads(result.stdout)}
    assert checks["Schema"] == {"verdict": "FAIL", "name": "Schema",
                                "detail": f"no Sundial schema (this sundial needs version {discover()[-1].version})",
                                "hint": "run: sundial migrate"}
    assert checks["Workers"]["verdict"] == "FAIL"
    assert checks["Workers"]["hint"].startswith("nothing will run")


def test_doctor_as_kubectl_plugin_exits_non_zero(dead_kubeconfig: str, dead_url: str, tmp_path: Path) -> None:
    """The real console entry point, under the name kubectl runs plugins by."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": dead_kubeconfig,
           "DATABASE_URL": f"postgresql://sundial@{dead_url}/sundial", "REDIS_URL": f"redis://{dead_url}/0"}
    code = "import sys; sys.argv[0] = '/usr/local/bin/kubectl-sundial'; from sundial.cli.main import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "doctor"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[-1] == "3 FAIL, 8 SKIP"
    usage = subprocess.run([sys.executable, "-c", code, "runs", "--limit", "0"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 2
    assert usage.stderr.startswith("Usage: kubectl-sundial runs")


# ---- monitoring ------------------------------------------------------------------------------


def test_dashboard_and_alerts_use_only_series_that_exist() -> None:
    """A renamed metric must not leave a blank panel or an alert that can never fire."""
    from prometheus_client import REGISTRY

    import sundial.operator.metrics
    import sundial.worker.metrics  # registers the worker's series

    exported: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        exported.update(family.name + suffix for suffix in suffixes)
    root = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
    rules = yaml.safe_load((root / "prometheus-rules.yaml").read_text())
    dashboard = json.loads((root / "grafana-dashboard.json").read_text())
    alert_exprs = [rule["expr"] for group in rules["spec"]["groups"] for rule in group["rules"]]
    panel_exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in alert_exprs + panel_exprs for name in re.findall(r"\bsundial_[a-z_]+", expr)}
    assert used - exported == set()
    assert {rule["alert"] for group in rules["spec"]["groups"] for rule in group["rules"]} >= {
        "SundialJobNotSucceeding", "SundialJobRunsFailing", "SundialQueueBackingUp", "SundialTargetUnserved"}
    assert sundial.operator.metrics.EXPECTED_INTERVAL._labelnames == ("namespace", "scheduledjob")
    assert sundial.worker.metrics.RUNS._labelnames == ("namespace", "scheduledjob", "status")
    # `job` is the label Prometheus gives every scrape target: no rule or panel may group by it.
    grouped = {label.strip() for expr in alert_exprs + panel_exprs
               for labels in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr) for label in labels.split(",")}
    assert "job" not in grouped
    assert "scheduledjob" in grouped


def test_every_process_exports_build_info_and_no_created_series() -> None:
    from prometheus_client import generate_latest

    import sundial.worker.metrics
    from sundial.core.build import sundial_version
    from sundial.core.metrics import export_build_info

    export_build_info("worker")
    sundial.worker.metrics.RUNS.labels("ns", "job-a", "success").inc()
    text = generate_latest().decode()
    assert f'sundial_build_info{{component="worker",python_version="{platform.python_version()}",' \
           f'version="{sundial_version()}"}} 1.0' in text
    assert "_created" not in text


def test_demo_env_puts_the_plugin_on_the_path(tmp_path: Path) -> None:
    from sundial.devstack.demo import demo_path

    folders = demo_path(tmp_path).split(":")
    assert folders[0] == str(tmp_path)
    assert any((Path(folder) / "kubectl-sundial").is_file() for folder in folders), folders


# ---- dead letters ------------------------------------------------------------------------------


async def test_deadletters_of_every_shard_with_reason_age_and_excerpt(
    redis_url: str, database_url: str, store: Store, dead_kubeconfig: str
) -> None:
    """A poison run of a job in one shard and a malformed message in another: the CLI, which
    does not know the shard count, lists both newest first, and doctor counts them."""
    keyspace = Keyspace(f"dl{uuid.uuid4().hex[:8]}", shards=4)
    broker = Broker.from_url(redis_url, keyspace)
    await broker.ensure_groups()
    try:
        now = SYSTEM_CLOCK.now()
        job, job_spec = await armed(broker, store, now, name="poisoned", schedule="0 0 1 1 *")
        await run_now(broker, job, job_spec, "poison", now)
        shard = keyspace.for_job(job.job_id)
        [(message_id, fields)] = await broker.queued(shard)
        await broker.dead_letter(shard, message_id, "delivered 5 times and never finished: every worker died", fields)
        await asyncio.sleep(0.01)
        other = next(candidate for candidate in keyspace.all_shards() if candidate != shard)
        await broker.redis.xadd(other.queue, {"junk": "1"})
        assert await broker.read(other, "reader", 10, None) == []
        run_id = f"{job.job_id}:manual:"
        prefix = keyspace.prefix
        listing = await _invoke_async(["deadletters"], REDIS_URL=redis_url, SUNDIAL_REDIS_PREFIX=prefix)
        table = listing.stdout.splitlines()
        assert table[0].split() == ["AGE", "JOB", "RUN", "REASON", "MESSAGE"]
        assert len(table) == 3
        assert re.match(r"\d+s +- +- +malformed run message: KeyError: 'run' +\{\"junk\": \"1\"\}$", table[1]), table
        assert re.match(rf"\d+s +{job.namespace}/{job.name} +manual:\w+ +delivered 5 times", table[2]), table
        assert table[2].rstrip().endswith("…")

        document = json.loads((await _invoke_async(["deadletters", "-o", "json"], REDIS_URL=redis_url,
                                                   SUNDIAL_REDIS_PREFIX=prefix)).stdout)
        assert document["total"] == 2
        malformed, poison = document["items"]
        assert (malformed["job"], malformed["runId"], malformed["excerpt"]) == (None, None, '{"junk": "1"}')
        assert malformed["shard"] == other.shard
        assert (poison["namespace"], poison["job"], poison["jobId"]) == (job.namespace, job.name, job.job_id)
        assert (poison["messageId"], poison["shard"]) == (message_id, shard.shard)
        assert poison["runId"].startswith(run_id)
        assert len(poison["excerpt"]) == 200
        assert 0 <= poison["ageSeconds"] < 60
        as_yaml = yaml.safe_load((await _invoke_async(["deadletters", "-o", "yaml", "--limit", "1"],
                                                      REDIS_URL=redis_url, SUNDIAL_REDIS_PREFIX=prefix)).stdout)
        assert (as_yaml["total"], len(as_yaml["items"])) == (2, 1)

        result = await _doctor_async(database_url, redis_url, prefix, dead_kubeconfig)
        assert _line(result, "Dead letters").startswith(
            "WARN   Dead letters    2 queue messages no worker could run, the newest ")
        assert "hint: kubectl sundial deadletters shows each with why" in result.stdout
        await disarm_job(broker, store, job.job_id, retain_history=False)
    finally:
        await broker.close()


async def _invoke_async(args: list[str], **env: str | None) -> Result:
    # The CLI runs its own event loop; keep it off the test's.
    return await asyncio.to_thread(invoke, args, **env)


def test_deadletters_without_any_or_without_redis(redis_url: str) -> None:
    empty = invoke(["deadletters"], REDIS_URL=redis_url, SUNDIAL_REDIS_PREFIX=f"none{uuid.uuid4().hex[:6]}")
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "No dead letters.\n")
    unset = invoke(["deadletters"])
    assert unset.exit_code == 2
    assert "Redis is not configured" in unset.stderr
