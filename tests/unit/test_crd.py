"""The generated CRD: committed copy current, schema structural, defaults equal to the model's."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sundial.core import crd
from sundial.core.runs import RunStatus, Trigger
from sundial.core.spec import DEFAULT_TIME_ZONE, ScheduledJobSpec, SpecError, parse_spec
from sundial.core.status import (
    CONDITION_READY,
    REASON_INVALID_SCHEDULE,
    REASON_SCHEDULED,
    REASON_SUSPENDED,
    RECENT_RUNS_LIMIT,
    Condition,
    ConditionStatus,
    RecentRun,
    ScheduledJobStatus,
    record_recent,
    set_condition,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "crds" / "sundial.dev_scheduledjobs.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

T0 = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)


def open_api() -> dict[str, Any]:
    schema: dict[str, Any] = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = open_api()["properties"]["spec"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """The apiserver's structural defaulting: absent fields take `default`, then recurse into it."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
        for name in list(value):
            if name in schema.get("properties", {}):
                value[name] = apply_defaults(value[name], schema["properties"][name])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(item, schema["items"]) for item in value]
    return value


# --- the committed file ----------------------------------------------------------------------


def test_committed_crd_is_current() -> None:
    assert COMMITTED.exists(), f"missing {COMMITTED}; generate it with: {crd.REGENERATE}"
    diff = crd.check(COMMITTED)
    assert diff is None, f"{COMMITTED.name} is stale; regenerate with: {crd.REGENERATE}\n{diff}"


def test_check_cli_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render().replace("shortNames:\n    - sdj", "shortNames:\n    - xx"))
    assert crd.main(["--check", str(stale)]) == 1
    out, err = capsys.readouterr()
    assert "-    - xx" in out
    assert "+    - sdj" in out
    assert crd.REGENERATE in err
    stale.write_text(crd.render())
    assert crd.main(["--check", str(stale)]) == 0


def test_rendered_yaml_parses_back_to_the_crd() -> None:
    text = crd.render()
    assert text.startswith("# Generated")
    assert "&id" not in text, "YAML anchors make the CRD hard to read"
    assert yaml.safe_load(text) == crd.crd()


def test_names_and_versions() -> None:
    doc = crd.crd()
    assert doc["metadata"]["name"] == "scheduledjobs.sundial.dev"
    spec = doc["spec"]
    assert spec["group"] == "sundial.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ScheduledJob",
        "listKind": "ScheduledJobList",
        "plural": "scheduledjobs",
        "singular": "scheduledjob",
        "shortNames": ["sdj"],
        "categories": ["sundial"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    [version] = crd.crd()["spec"]["versions"]
    columns = {c["name"]: (c["type"], c["jsonPath"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": ("string", '.status.conditions[?(@.type=="Ready")].status', 0),
        "Schedule": ("string", ".spec.schedule", 0),
        "TimeZone": ("string", ".spec.timeZone", 0),
        "Suspend": ("boolean", ".spec.suspend", 0),
        "Last Status": ("string", ".status.lastStatus", 0),
        "Last Run": ("date", ".status.lastRunTime", 0),
        "Next Run": ("string", ".status.nextRunTime", 0),
        "Age": ("date", ".metadata.creationTimestamp", 0),
        "More Schedules": ("string", ".spec.schedules[*].schedule", 1),
        "Exclude": ("string", ".spec.exclude", 1),
        "Runs Left": ("integer", ".status.remainingRuns", 1),
        "Target": ("string", ".spec.target", 1),
        "Category": ("string", ".spec.category", 1),
        "Success": ("integer", ".status.successCount", 1),
        "Failed": ("integer", ".status.failCount", 1),
    }
    assert next(iter(columns)) == "Ready", "READY first, as kubectl shows it for Deployments"
    # Every column path must exist in the schema, or it silently prints <none> forever.
    for _, path, _ in columns.values():
        if path.startswith(".metadata"):
            continue
        node = open_api()
        for name in re.sub(r"\[.*$", "", path).strip(".").split("."):
            node = node["properties"][name]


# --- structural schema -----------------------------------------------------------------------


def test_schema_is_structural() -> None:
    forbidden = {"$ref", "$defs", "allOf", "anyOf", "oneOf", "not", "title"}
    for path, node in nodes(open_api()):
        assert "type" in node, f"{path} has no type"
        assert not forbidden & node.keys(), f"{path} uses {forbidden & node.keys()}"
        if node["type"] == "object" and path != ".metadata":
            typed = {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"}
            assert typed & node.keys(), f"{path} is an untyped object"
        if node["type"] == "array":
            assert "items" in node, path
        assert node.get("default", "") is not None, f"{path} has a null default"
        # The apiserver refuses null for a field with an enum, nullable or not.
        assert not ("enum" in node and node.get("nullable")), f"{path} is a nullable enum"
        if "format" in node:
            assert node["format"] in {"date-time", "date"}, f"{path}: format {node['format']}"


def test_spec_schema_shape() -> None:
    spec = spec_schema()
    assert spec["required"] == ["schedule"]  # target or jobTemplate: a CEL rule
    assert open_api()["required"] == ["spec"]
    assert spec["properties"]["params"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["params"]["type"] == "object"
    assert spec["properties"]["displayName"]["nullable"] is True
    assert spec["properties"]["jobTemplate"]["x-kubernetes-preserve-unknown-fields"] is True
    assert {"rule": "has(self.target) != has(self.jobTemplate)",
            "message": "exactly one of target and jobTemplate must be set"} in spec["x-kubernetes-validations"]
    assert spec["properties"]["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace", "BufferOne", "BufferAll"]
    assert spec["properties"]["target"]["pattern"].startswith("^")
    assert set(spec["properties"]) == {field.alias for field in ScheduledJobSpec.model_fields.values()}


def test_status_schema_shape() -> None:
    status = open_api()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert set(status["properties"]) == {field.alias for field in ScheduledJobStatus.model_fields.values()}
    assert status["properties"]["nextRunTime"] == {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "description": "Next slot the job will fire at.",
    }
    assert status["properties"]["recentRuns"]["maxItems"] == RECENT_RUNS_LIMIT
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]
    assert set(condition["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert "nullable" not in condition["properties"]["lastTransitionTime"]
    last_status = status["properties"]["lastStatus"]
    assert last_status["nullable"] is True
    assert last_status["x-kubernetes-validations"] == [
        {
            "rule": 'self in ["Running", "Succeeded", "Failed", "TimedOut", "Cancelled", "Skipped"]',
            "message": "must be one of Running, Succeeded, Failed, TimedOut, Cancelled, Skipped",
        }
    ]
    assert not [path for path, node in nodes(status) if "default" in node]


def cel_pattern(rule: str) -> re.Pattern[str]:
    """The regex of a `self.matches(r'...')` rule; RE2 and Python agree on the ones we use."""
    literal = re.fullmatch(r"!?self\.matches\(r'(.*)'\)", rule)
    assert literal is not None, rule
    return re.compile(literal.group(1))


def test_backoff_rule() -> None:
    props = spec_schema()["properties"]
    [rule] = props["retry"]["properties"]["backoff"]["x-kubernetes-validations"]
    assert "self.maxDelaySeconds >= self.delaySeconds" in rule["rule"]


VALID_SCHEDULES = [
    "0 12,18,20 * * *",
    "*/5 * * * * *",
    "  30 12,18,20 * * *  ",
    "0\t0 1 1 *",
    "0 0 L * *",
    "0 0 * * 5L",
    "0 0 * * 5#3",
    "@daily",
    "@HOURLY",
    "@every 5m",
    "@every 1h30m",
]
INVALID_SHAPES = ["0 0 * *", "0 0 0 1 1 * 2030", "@every 1h 30m", "*", "", "   "]


@pytest.mark.parametrize("expression", VALID_SCHEDULES)
def test_schedule_rules_accept_what_the_model_accepts(expression: str) -> None:
    ScheduledJobSpec.model_validate({"target": "noop", "schedule": expression})
    shape, reboot = spec_schema()["properties"]["schedule"]["x-kubernetes-validations"]
    assert cel_pattern(shape["rule"]).search(expression)
    assert not cel_pattern(reboot["rule"]).search(expression)


@pytest.mark.parametrize("expression", INVALID_SHAPES)
def test_schedule_shape_rule_refuses_what_the_model_refuses(expression: str) -> None:
    with pytest.raises(SpecError):
        parse_spec({"target": "noop", "schedule": expression})
    shape, _ = spec_schema()["properties"]["schedule"]["x-kubernetes-validations"]
    assert not cel_pattern(shape["rule"]).search(expression)


@pytest.mark.parametrize("expression", ["@reboot", "  @REBOOT ", "@Reboot"])
def test_reboot_rule(expression: str) -> None:
    with pytest.raises(SpecError):
        parse_spec({"target": "noop", "schedule": expression})
    _, reboot = spec_schema()["properties"]["schedule"]["x-kubernetes-validations"]
    assert cel_pattern(reboot["rule"]).search(expression)


def test_unsupported_constructs_are_refused() -> None:
    with pytest.raises(crd.UnsupportedSchema):
        crd.structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})
    with pytest.raises(crd.UnsupportedSchema):
        crd.structural({"type": "string", "contentMediaType": "text/plain"}, {})
    with pytest.raises(crd.UnsupportedSchema):
        crd.structural({"description": "no type"}, {})
    assert crd.structural({"type": "number", "exclusiveMinimum": 0}, {}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }


# --- defaults --------------------------------------------------------------------------------


def test_schema_defaults_equal_model_defaults() -> None:
    minimal = {"target": "noop", "schedule": "@daily"}
    defaulted = apply_defaults(minimal, spec_schema())
    model = ScheduledJobSpec.model_validate(minimal)
    assert defaulted == model.model_dump(mode="json", by_alias=True, exclude_none=True)
    # Spelled out, since these came over from the BullMQ design and people rely on them.
    assert defaulted["retry"]["attempts"] == 3
    assert defaulted["retry"]["backoff"]["delaySeconds"] == 5
    assert defaulted["retry"]["backoff"]["type"] == "Exponential"
    assert defaulted["successfulRunsHistoryLimit"] == 100
    assert defaulted["failedRunsHistoryLimit"] == 200
    assert defaulted["timeoutSeconds"] == 300
    assert defaulted["timeZone"] == DEFAULT_TIME_ZONE == "America/Sao_Paulo"


def test_nested_defaults_fill_a_partial_object() -> None:
    partial = {"target": "noop", "schedule": "@daily", "retry": {"backoff": {"delaySeconds": 1}}}
    defaulted = apply_defaults(partial, spec_schema())
    model = ScheduledJobSpec.model_validate(partial)
    assert defaulted == model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert defaulted["retry"]["attempts"] == 3


# --- examples --------------------------------------------------------------------------------

EXPECTED_EXAMPLES = {
    "biz-pipeline": ("biz:pipeline", "0 12,18,20 * * *", "biz", False),
    "biz-review-timeout": ("biz:review-timeout", "*/5 * * * *", "biz", False),
    "biz-send-reports": ("biz:send-reports", "30 12,18,20 * * *", "biz", True),
    "demo-heartbeat": ("noop", "*/5 * * * * *", "system", False),
    "demo-flaky": ("fail", "*/10 * * * * *", "system", False),
}


def test_every_expected_example_exists() -> None:
    assert {path.stem for path in EXAMPLES} >= EXPECTED_EXAMPLES.keys()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_a_valid_scheduled_job(path: Path) -> None:
    [doc] = list(yaml.safe_load_all(path.read_text()))
    assert doc["apiVersion"] == crd.API_VERSION
    assert doc["kind"] == crd.KIND
    assert doc["metadata"]["name"] == path.stem
    assert "namespace" not in doc["metadata"], "examples are applied with -n"
    spec = parse_spec(doc["spec"])
    if path.stem in EXPECTED_EXAMPLES:
        assert (spec.target, spec.schedule, spec.category, spec.suspend) == EXPECTED_EXAMPLES[path.stem]


def test_flaky_demo_retries() -> None:
    [doc] = list(yaml.safe_load_all((ROOT / "examples" / "demo-flaky.yaml").read_text()))
    spec = parse_spec(doc["spec"])
    assert spec.params == {"message": "simulated failure"}
    assert spec.retry.attempts == 2
    assert spec.retry.backoff.delay_seconds == 1


# --- status ----------------------------------------------------------------------------------


def ready(status: ConditionStatus, reason: str, message: str = "", at: datetime | None = None) -> Condition:
    return Condition(type=CONDITION_READY, status=status, reason=reason, message=message, last_transition_time=at)


TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


@pytest.mark.parametrize(
    ("existing", "new", "expected_time", "expected_reason"),
    [
        pytest.param([], ready(TRUE, REASON_SCHEDULED), T1, REASON_SCHEDULED, id="added: stamped now"),
        pytest.param([], ready(TRUE, REASON_SCHEDULED, at=T2), T2, REASON_SCHEDULED, id="added: own time kept"),
        pytest.param(
            [ready(TRUE, REASON_SCHEDULED, at=T0)],
            ready(TRUE, REASON_SCHEDULED, "next at 12:00"),
            T0,
            REASON_SCHEDULED,
            id="same status: time kept",
        ),
        pytest.param(
            [ready(FALSE, REASON_INVALID_SCHEDULE, at=T0)],
            ready(FALSE, REASON_SUSPENDED),
            T0,
            REASON_SUSPENDED,
            id="same status, new reason: time kept",
        ),
        pytest.param(
            [ready(TRUE, REASON_SCHEDULED, at=T0)],
            ready(TRUE, REASON_SCHEDULED, at=T2),
            T0,
            REASON_SCHEDULED,
            id="same status: new's own time ignored",
        ),
        pytest.param(
            [ready(TRUE, REASON_SCHEDULED, at=T0)],
            ready(FALSE, REASON_INVALID_SCHEDULE),
            T1,
            REASON_INVALID_SCHEDULE,
            id="status changed: stamped now",
        ),
        pytest.param(
            [ready(TRUE, REASON_SCHEDULED, at=T0)],
            ready(FALSE, REASON_INVALID_SCHEDULE, at=T2),
            T2,
            REASON_INVALID_SCHEDULE,
            id="status changed: own time kept",
        ),
    ],
)
def test_set_condition(
    existing: list[Condition], new: Condition, expected_time: datetime, expected_reason: str
) -> None:
    result = set_condition(existing, new, now=T1 + timedelta(microseconds=123_456))
    [condition] = result
    assert condition.last_transition_time == expected_time
    assert condition.reason == expected_reason
    assert condition.status == new.status
    assert condition.message == new.message


def test_set_condition_keeps_other_conditions_and_order() -> None:
    other = Condition(type="Progressing", status=TRUE, reason="Arming", last_transition_time=T0)
    first = set_condition([other], ready(TRUE, REASON_SCHEDULED), now=T1)
    assert [c.type for c in first] == ["Progressing", CONDITION_READY]
    second = set_condition(first, ready(FALSE, REASON_SUSPENDED), now=T2)
    assert [c.type for c in second] == ["Progressing", CONDITION_READY]
    assert second[0] == other
    assert second[1].last_transition_time == T2


def test_status_round_trips_with_z_timestamps() -> None:
    conditions = set_condition([], ready(TRUE, REASON_SCHEDULED), now=T0)
    status = ScheduledJobStatus(next_run_time=T1, last_run_time=T0 + timedelta(milliseconds=250), conditions=conditions)
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["nextRunTime"] == "2024-05-01T15:05:00Z"
    assert wire["lastRunTime"] == "2024-05-01T15:00:00.250Z"
    assert wire["conditions"][0]["lastTransitionTime"] == "2024-05-01T15:00:00Z"
    assert ScheduledJobStatus.model_validate(wire) == status


def test_status_reads_what_another_version_wrote() -> None:
    wire = {
        "nextRunTime": "2024-05-01T12:05:00-03:00",
        "someFieldFromTheFuture": {"x": 1},
        "lastError": "x" * 5000,
        "recentRuns": [
            {"runId": f"job:{i}", "trigger": "scheduled", "status": "success"} for i in range(RECENT_RUNS_LIMIT + 3)
        ],
    }
    status = ScheduledJobStatus.model_validate(wire)
    assert status.next_run_time == T1
    assert status.last_error is not None
    assert len(status.last_error) == 1024
    assert [r.run_id for r in status.recent_runs] == [f"job:{i}" for i in range(RECENT_RUNS_LIMIT)]


def test_record_recent_keeps_newest_first() -> None:
    runs: list[RecentRun] = []
    for i in range(RECENT_RUNS_LIMIT + 2):
        runs = record_recent(runs, RecentRun(run_id=f"r{i}", trigger=Trigger.SCHEDULED, status=RunStatus.SUCCESS))
    assert [r.run_id for r in runs] == ["r6", "r5", "r4", "r3", "r2"]


def test_run_states_are_camel_case_in_the_api_and_lowercase_elsewhere() -> None:
    from sundial.core.runs import run_status_from_api, run_status_to_api, trigger_from_api, trigger_to_api
    from sundial.core.status import with_seed_run_states

    for state in RunStatus:
        api = run_status_to_api(state)
        assert re.fullmatch(r"[A-Z][A-Za-z]+", api), api
        assert run_status_from_api(api) is state
        assert run_status_from_api(state.value) is state, "the seed's spelling still reads"
    for trigger in Trigger:
        assert trigger_from_api(trigger_to_api(trigger)) is trigger
    with pytest.raises(ValueError, match="expected one of Running, Succeeded"):
        run_status_from_api("ok")
    status = ScheduledJobStatus(
        last_status=RunStatus.TIMED_OUT,
        recent_runs=[RecentRun(run_id="r", trigger=Trigger.CATCHUP, status=RunStatus.SUCCESS)],
    )
    wire = status.model_dump(mode="json", by_alias=True)
    assert (wire["lastStatus"], wire["recentRuns"][0]["trigger"], wire["recentRuns"][0]["status"]) == (
        "TimedOut", "CatchUp", "Succeeded")
    assert status.model_dump()["last_status"] is RunStatus.TIMED_OUT, "Python code keeps the enum"
    assert ScheduledJobStatus.model_validate(wire) == status
    seed = with_seed_run_states(wire)
    assert (seed["lastStatus"], seed["recentRuns"][0]["trigger"], seed["recentRuns"][0]["status"]) == (
        "timed_out", "catchup", "success")


def test_backoff_durations_are_whole_seconds() -> None:
    backoff = open_api()["properties"]["spec"]["properties"]["retry"]["properties"]["backoff"]["properties"]
    assert backoff["delaySeconds"]["type"] == backoff["maxDelaySeconds"]["type"] == "integer"
    assert backoff["type"]["enum"] == ["Exponential", "Fixed"]
    with pytest.raises(SpecError, match="delaySeconds"):
        parse_spec({"target": "noop", "schedule": "@daily", "retry": {"backoff": {"delaySeconds": 1.5}}})
