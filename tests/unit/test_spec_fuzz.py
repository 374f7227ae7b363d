"""Generated specs, good and bad, through the CRD schema, the admission webhook and arming.

Nothing may crash, and every refusal names the field it refuses. `make test` runs a few hundred
examples; `make chaos` sets SUNDIAL_FUZZ_EXAMPLES=10000.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import kopf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sundial.core.crd import spec_schema
from sundial.core.jobs import arm_command
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.operator.admission import validate_spec

pytestmark = pytest.mark.chaos  # `make chaos` runs it with SUNDIAL_FUZZ_EXAMPLES=10000

EXAMPLES = int(os.environ.get("SUNDIAL_FUZZ_EXAMPLES", "200"))
FIELDS = [field.alias or name for name, field in ScheduledJobSpec.model_fields.items()]
SCHEMA = spec_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
JOB = JobRef(job_id="6f1c1f0e-0000-4000-8000-000000000001", namespace="ns", name="fuzz")
NOW = datetime(2025, 6, 8, 12, 0, tzinfo=UTC)

# Any text, with the characters storage and protocols trip on over-represented.
nasty_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\u202e", "é", "日", "🕐", "{", "*"])),
    max_size=40,
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), nasty_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)), max_leaves=12)
big_params = st.integers(0, 400_000).map(lambda size: {"blob": "x" * size})

GOOD = {
    "schedule": st.sampled_from(["* * * * *", "*/5 * * * * *", "@daily", "@every 5m", "0 9 * * 1-5", "61 * * * *",
                                 "@every 0s", "* * * * * * *", "L W ? #", "30 2 29 2 *"]),
    "timeZone": st.sampled_from(["UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Mars/Olympus", "", "../../etc"]),
    "target": st.sampled_from(["noop", "http", "biz:pipeline", "Bad Target", "-x", "a" * 300]),
    "params": st.one_of(st.dictionaries(nasty_text, json_values, max_size=5), big_params, json_values),
    "retry": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "attempts": st.integers(-1, 200),
        "backoff": st.fixed_dictionaries({}, optional={
            "type": st.sampled_from(["fixed", "exponential", "linear"]),
            "delaySeconds": st.one_of(st.floats(-1, 1e6), st.integers(-1, 10**6)),
            "maxDelaySeconds": st.floats(-1, 1e7)})})),
    "concurrencyPolicy": st.sampled_from(["Allow", "Forbid", "Replace", "allow", ""]),
    "missedRunPolicy": st.sampled_from(["RunOnce", "Skip", "RunAll", "Never"]),
}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        strategy = GOOD.get(name) if draw(st.booleans()) else None
        spec[name] = draw(strategy if strategy is not None else json_values)
    for name in ("schedule", "target"):
        if name not in spec and draw(st.integers(0, 9)) > 0:
            spec[name] = draw(GOOD[name])
    if draw(st.integers(0, 19)) == 0:
        spec[draw(nasty_text)] = draw(json_values)
    return spec


def named_fields(message: str) -> list[str]:
    """The `spec.<field>` each problem in a refusal names."""
    return re.findall(r"(?:^|; )spec(\.[A-Za-z_][A-Za-z0-9_-]*|\[)", message)


def schema_refusals(spec: dict[str, Any]) -> list[str]:
    """What the API server's schema check would refuse, as the field each error is about."""
    fields = []
    for error in VALIDATOR.iter_errors(spec):
        path = [str(part) for part in error.absolute_path]
        if path:
            fields.append(path[0])
        elif error.validator == "required":
            fields.append(str(error.message.split("'")[1]))
        elif error.validator == "additionalProperties":
            fields.append("(unknown field)")
        else:
            fields.append("")
    return fields


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_generated_specs_never_crash_and_refusals_name_the_field(spec: dict[str, Any]) -> None:
    try:
        json.dumps(spec, allow_nan=False)
        json_ok = True
    except ValueError:
        json_ok = False  # NaN and infinities cannot reach the API server: skip its schema there
    if json_ok:
        assert all(schema_refusals(spec)), "every schema error points at a field"
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        message = str(exc)
        assert named_fields(message), f"refusal names no field: {message!r}"
        cause = exc.__cause__
        assert isinstance(cause, ValidationError)
        assert all(error["loc"] for error in cause.errors()), f"a problem without a field: {message!r}"
        with pytest.raises(kopf.AdmissionError) as refused:
            validate_spec(spec, operation="CREATE")  # type: ignore[arg-type]
        assert str(refused.value) == message
        return
    validate_spec(spec, operation="CREATE")  # type: ignore[arg-type]
    # Accepted: the operator can arm it and the worker can read what it armed.
    command = arm_command(JOB, parsed, NOW, None)
    json.loads(command.template_json)
    assert len(command.template_json.encode("utf-8")) < 1_000_000
    # What PostgreSQL's jsonb and text columns would refuse when the operator writes the row.
    stored = json.dumps(parsed.model_dump(mode="json", by_alias=True))
    assert "\\u0000" not in stored
    stored.encode("utf-8")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"params": {"blob": "x" * 300_000}}, "spec.params: params take 300012 bytes as JSON; at most 262144"),
        ({"params": {"a": ["ok", "nul\x00"]}}, "spec.params: params.a[1] contains a NUL character"),
        ({"params": {"\x00": 1}}, "spec.params: params key contains a NUL character"),
        ({"description": "bad \ud800 half"}, "spec.description: Input should be a valid string, unable to parse"),
        ({"": 1}, 'spec[""]: Extra inputs are not permitted'),
        ({"colour.x": 1}, 'spec["colour.x"]: Extra inputs are not permitted'),
    ],
)
def test_unstorable_input_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec({"schedule": "* * * * *", "target": "noop", **fields})
    assert str(refused.value).startswith(message)


def test_unicode_text_and_big_params_within_the_limit_are_accepted() -> None:
    spec = parse_spec({"schedule": "* * * * *", "target": "noop", "displayName": "Relatório diário 日報 🕐",
                       "params": {"ключ": "значение", "blob": "x" * 200_000}})
    assert arm_command(JOB, spec, NOW, None).template_json
