"""The ScheduledJob CustomResourceDefinition, generated from the spec and status models.

    python -m sundial.core.crd                 print the CRD as YAML
    python -m sundial.core.crd --check FILE    exit 1 with a diff when FILE is stale

The apiserver needs a *structural* schema (every node typed, no $ref, no free-form unions), so
pydantic's JSON Schema is rewritten rather than embedded. The rewrite refuses any keyword it
does not know how to carry over: a new model construct should fail here, loudly, instead of
silently producing a schema the apiserver enforces differently from the model.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from sundial.core.policy import POLICY_KIND, POLICY_PLURAL, POLICY_SINGULAR, TargetPolicySpec
from sundial.core.spec import Backoff, ScheduledJobSpec
from sundial.core.status import CONDITION_READY, ScheduledJobStatus

GROUP: Final = "sundial.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "ScheduledJob"
PLURAL: Final = "scheduledjobs"
SINGULAR: Final = "scheduledjob"
SHORT_NAME: Final = "sdj"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
API_VERSION: Final = f"{GROUP}/{VERSION}"
# Setting it to a new value asks for one manual run; the value becomes the run's reason.
RUN_NOW_ANNOTATION: Final = "sundial.dev/run-now"
# Where the operator records the last run-now value it acted on, so each value runs once.
LAST_RUN_NOW_FIELD: Final = "lastRunNowRequest"
# Run the slots of a past window: JSON {"from", "to", "sequential", "id"} (sundial.core.backfill).
BACKFILL_ANNOTATION: Final = "sundial.dev/backfill"
LAST_BACKFILL_FIELD: Final = "lastBackfillRequest"

REGENERATE: Final = "python -m sundial.core.crd > deploy/crds/sundial.dev_scheduledjobs.yaml"
POLICY_CRD_NAME: Final = f"{POLICY_PLURAL}.{GROUP}"
REGENERATE_POLICY: Final = "python -m sundial.core.crd --policy > deploy/crds/sundial.dev_targetpolicies.yaml"
POLICY_HEADER: Final = (
    f"# Generated from sundial.core.policy: do not edit.\n# Regenerate with: {REGENERATE_POLICY}\n"
)
HEADER: Final = (
    f"# Generated from sundial.core.spec and sundial.core.status: do not edit.\n# Regenerate with: {REGENERATE}\n"
)

JsonSchema = dict[str, Any]

# Copied as they are: they mean the same to the apiserver as to pydantic.
_PLAIN_KEYWORDS: Final = frozenset(
    {"type", "description", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern"}
    | {"minItems", "maxItems", "required"}
)
_DROPPED_KEYWORDS: Final = frozenset({"title"})
# Formats the apiserver and pydantic read alike. Notably not `duration` (ISO 8601 to pydantic,
# a Go duration to the apiserver) nor `email`/`uri`, where the two validators disagree on edges.
_SUPPORTED_FORMATS: Final = frozenset({"date-time", "date"})

# A macro with at most one argument (@daily, @every 5m) or 5 or 6 whitespace-separated fields.
# Valid as both RE2 (CEL) and Python re, so the tests can check it against parse_schedule.
SCHEDULE_SHAPE: Final = r"^\s*(@\S+(\s+\S+)?|[^@\s]\S*(\s+\S+){4,5})\s*$"

_DEFAULT_MAX_DELAY: Final[float] = Backoff.model_fields["max_delay_seconds"].default

# Rules the model cannot express as JSON Schema, checked by the apiserver at apply time so a
# broken spec is refused by kubectl instead of turning into a condition later.
_SPEC_VALIDATIONS: Final[dict[tuple[str, ...], list[dict[str, str]]]] = {
    (): [
        {
            "rule": "has(self.target) != has(self.jobTemplate)",
            "message": "exactly one of target and jobTemplate must be set",
        }
    ],
    ("retry", "backoff"): [
        {
            "rule": "!has(self.delaySeconds) || !has(self.maxDelaySeconds)"
            " || self.maxDelaySeconds >= self.delaySeconds",
            "message": f"maxDelaySeconds (default {_DEFAULT_MAX_DELAY:g}) must be at least delaySeconds",
        }
    ],
    ("schedule",): [
        # Only the shape, which catches the usual slips (7-field Quartz, a missing field);
        # the operator's parse_schedule is the real check and reports the rest as InvalidSchedule.
        {
            "rule": f"self.matches(r'{SCHEDULE_SHAPE}')",
            "message": "expected 5 cron fields, 6 with seconds first, a macro such as @daily, or @every <duration>",
        },
        {
            "rule": r"!self.matches(r'^\s*(?i:@reboot)\s*$')",
            "message": "@reboot is not supported: a ScheduledJob has no boot to follow",
        },
    ],
}


class UnsupportedSchema(ValueError):
    """The model uses a JSON Schema construct a structural CRD schema cannot carry."""


class _FactoryDefaults(GenerateJsonSchema):
    """Also emit defaults that come from a default_factory.

    Nested models default to `{}`, not their full dump: the apiserver fills the nested
    defaults in itself, so each default is written down exactly once.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return value if value is not None else NoDefault


def structural(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Rewrite one pydantic JSON Schema node into the apiserver's structural dialect."""
    node = dict(node)
    ref = node.pop("$ref", None)
    all_of = node.pop("allOf", None)
    any_of = node.pop("anyOf", None)
    base: JsonSchema = {}
    if ref is not None:
        base = structural(_resolve(ref, defs), defs)
    elif all_of is not None:
        if len(all_of) != 1:
            raise UnsupportedSchema(f"allOf with {len(all_of)} branches")
        base = structural(all_of[0], defs)
    elif any_of is not None:
        branches = [b for b in any_of if b != {"type": "null"}]
        if len(branches) != 1:
            raise UnsupportedSchema(f"anyOf other than [X, null]: {any_of}")
        base = structural(branches[0], defs)
        if len(branches) < len(any_of):
            base["nullable"] = True

    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key in _PLAIN_KEYWORDS:
            # Copied so no two nodes share a list, which YAML would print as an &anchor.
            out[key] = copy.deepcopy(value)
        elif key == "default":
            # A null default says "absent"; the apiserver would reject it on a non-nullable field.
            if value is not None:
                out[key] = copy.deepcopy(value)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 carries the bound; OpenAPI v3.0 carries a flag beside it.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "format":
            if value in _SUPPORTED_FORMATS:
                out[key] = value
        elif key == "properties":
            out[key] = {name: structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = structural(value, defs)
            # False (extra="forbid") is what pruning does anyway, and v1 CRDs reject it
            # beside `properties`.
        elif key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        else:
            raise UnsupportedSchema(f"keyword {key!r} in {node}")
    # The referencing field's own description and default win over the referenced type's.
    merged = {**base, **out}
    if merged.get("nullable") and "enum" in merged:
        merged = _nullable_enum(merged)
    if "type" not in merged:
        raise UnsupportedSchema(f"untyped schema node {node}")
    return merged


def _nullable_enum(node: JsonSchema) -> JsonSchema:
    # The apiserver refuses null for any field with an `enum`, nullable or not, even with null
    # listed (kube-openapi compares by Go type). CEL rules are skipped for null, so the values
    # are checked there instead.
    values = [value for value in node["enum"] if value is not None]
    if not all(isinstance(value, str) for value in values):
        raise UnsupportedSchema(f"nullable enum of non-strings: {values}")
    rule = {
        "rule": f"self in [{', '.join(json.dumps(value) for value in values)}]",
        "message": f"must be one of {', '.join(values)}",
    }
    out = {key: value for key, value in node.items() if key != "enum"}
    out["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), rule]
    return out


def _resolve(ref: str, defs: dict[str, JsonSchema]) -> JsonSchema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise UnsupportedSchema(f"unresolvable $ref {ref}")
    return defs[ref[len(prefix) :]]


def model_schema(model: type[BaseModel]) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, schema_generator=_FactoryDefaults)
    return structural(raw, raw.pop("$defs", {}))


def spec_schema() -> JsonSchema:
    schema = model_schema(ScheduledJobSpec)
    for path, rules in _SPEC_VALIDATIONS.items():
        node = schema
        for name in path:
            node = node["properties"][name]
        node["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), *rules]
    return schema


def status_schema() -> JsonSchema:
    # Only the operator writes status; apiserver defaults there would only materialise zeros
    # and empty lists that hide a missing write.
    schema = _without_defaults(model_schema(ScheduledJobStatus))
    # Fields an older or newer operator wrote survive; the ones we know are still typed.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    conditions = schema["properties"]["conditions"]
    # As metav1.Condition lists are declared: one entry per type, merged by type.
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def _without_defaults(node: JsonSchema) -> JsonSchema:
    out = {key: value for key, value in node.items() if key != "default"}
    if "properties" in out:
        out["properties"] = {name: _without_defaults(prop) for name, prop in out["properties"].items()}
    if "items" in out:
        out["items"] = _without_defaults(out["items"])
    return out


def open_api_schema() -> JsonSchema:
    return {
        "type": "object",
        "description": "ScheduledJob runs a registered target on a cron schedule, exactly once per slot.",
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "required": ["spec"],
    }


def printer_columns() -> list[JsonSchema]:
    def column(name: str, type_: str, path: str, description: str, priority: int = 0) -> JsonSchema:
        col: JsonSchema = {"name": name, "type": type_, "jsonPath": path, "description": description}
        if priority:
            col["priority"] = priority
        return col

    return [
        # First, as Deployments and Pods show READY: is the job armed, or why not (describe says).
        column("Ready", "string", f'.status.conditions[?(@.type=="{CONDITION_READY}")].status',
               "Whether the job is armed."),
        column("Schedule", "string", ".spec.schedule", "Cron expression or macro."),
        column("TimeZone", "string", ".spec.timeZone", "Time zone the schedule is read in."),
        column("Suspend", "boolean", ".spec.suspend", "No new runs while true."),
        column("Last Status", "string", ".status.lastStatus", "Outcome of the last run."),
        column("Last Run", "date", ".status.lastRunTime", "When the latest run started."),
        # Not `date`: the apiserver renders a date column as time elapsed since the value, and a
        # future time comes out as "<invalid>". The absolute UTC timestamp is what a reader
        # wants here anyway ("when is the next run?"), not a countdown.
        column("Next Run", "string", ".status.nextRunTime", "Next slot, in UTC."),
        column("Age", "date", ".metadata.creationTimestamp", "Time since the job was created."),
        # -o wide: the schedule policies that change which slots run, in brief (describe has it all).
        column("More Schedules", "string", ".spec.schedules[*].schedule", "Schedules beside Schedule.", priority=1),
        column("Exclude", "string", ".spec.exclude", "Dates and crons whose slots never run.", priority=1),
        column("Runs Left", "integer", ".status.remainingRuns", "Of maxRuns, the slots still to come.", priority=1),
        column("Target", "string", ".spec.target", "Registered target the job runs.", priority=1),
        column("Category", "string", ".spec.category", "Grouping used by filters.", priority=1),
        column("Success", "integer", ".status.successCount", "Runs that succeeded.", priority=1),
        column("Failed", "integer", ".status.failCount", "Runs that failed.", priority=1),
    ]


def crd() -> JsonSchema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "sundial"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                # Not `sj` (KEDA's ScaledJob, which Sundial integrates with) nor any short name of
                # Argo, Flux, cert-manager, Crossplane, Knative or Istio: SunDial Job.
                "shortNames": [SHORT_NAME],
                # Not `all`: `kubectl get all` is for workloads, and listing every job there
                # would bury them.
                "categories": ["sundial"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns(),
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # Never &anchors: a CRD is read by people and diffed, not round-tripped.
        return True


def policy_crd() -> JsonSchema:
    """The cluster-scoped TargetPolicy: which targets, pools and egress each namespace gets."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": POLICY_CRD_NAME, "labels": {"app.kubernetes.io/part-of": "sundial"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": POLICY_KIND, "listKind": f"{POLICY_KIND}List", "plural": POLICY_PLURAL,
                      "singular": POLICY_SINGULAR, "categories": ["sundial"]},
            "scope": "Cluster",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "TargetPolicy grants the namespaces it selects targets, worker pools and http "
                                   "egress; a namespace no policy selects gets the deployment's default.",
                    "properties": {
                        "apiVersion": {"type": "string", "description": "Versioned schema of this object."},
                        "kind": {"type": "string", "description": "REST resource this object represents."},
                        "metadata": {"type": "object"},
                        "spec": model_schema(TargetPolicySpec),
                    },
                    "required": ["spec"],
                }},
                "additionalPrinterColumns": [
                    {"name": "Namespaces", "type": "string", "jsonPath": ".spec.namespaces",
                     "description": "Namespaces selected by name."},
                    {"name": "Targets", "type": "string", "jsonPath": ".spec.targets",
                     "description": "Targets granted."},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                     "description": "Time since the policy was created."},
                ],
            }],
        },
    }


def render(*, policy: bool = False) -> str:
    # Sorted keys, like controller-gen: the file diffs cleanly whatever order fields move in.
    doc = policy_crd() if policy else crd()
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100, allow_unicode=True)
    if policy:
        return POLICY_HEADER + body
    return HEADER + body


def check(path: Path, *, policy: bool = False) -> str | None:
    """A unified diff from `path` to the generated CRD, or None when they match."""
    expected = render(policy=policy)
    actual = path.read_text() if path.exists() else ""
    if actual == expected:
        return None
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=str(path),
        tofile="generated",
    )
    return "".join(diff)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sundial.core.crd", description="Generate the ScheduledJob CRD.")
    parser.add_argument("--check", metavar="FILE", type=Path, help="exit 1 with a diff when FILE is stale")
    parser.add_argument("--policy", action="store_true", help="the TargetPolicy CRD instead of ScheduledJob's")
    args = parser.parse_args(argv)
    if args.check is None:
        sys.stdout.write(render(policy=args.policy))
        return 0
    diff = check(args.check, policy=args.policy)
    if diff is None:
        return 0
    sys.stdout.write(diff)
    sys.stderr.write(f"{args.check} is stale; regenerate with: {REGENERATE_POLICY if args.policy else REGENERATE}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
