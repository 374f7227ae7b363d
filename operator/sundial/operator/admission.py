"""Validating admission: refuse a spec the operator could not arm, at `kubectl apply` time.

The message is `parse_spec`'s own (`spec.schedule: ...`), so kubectl prints exactly what the
Ready condition would have said. Then the namespace's TargetPolicy (`sundial.core.policy`): a
target or worker pool it does not grant, or a secretKeyRef to another namespace's Secret, is
refused with a message naming the policy and the field. Workers check the same again before
running anything, so a spec that got past this webhook still does not run.

The webhook is a convenience, not the authority: it is registered with failurePolicy Ignore,
so while no operator serves it ScheduledJobs can still be applied (workers keep firing the
others), and the reconcile handler reports the same spec problem as Ready=False.
"""

from __future__ import annotations

from typing import Any

import kopf

from sundial.core.crd import GROUP, PLURAL, VERSION
from sundial.core.secrets import foreign_ref_refusal
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.operator.reconcile import plain
from sundial.operator.runtime import runtime_of


def validate_spec(spec: kopf.Spec, **kwargs: Any) -> None:
    new_spec = plain(spec)
    # Only a spec change is judged: removing a finalizer or setting an annotation on a job that
    # was stored with a bad spec (webhook down at the time) must not be refused.
    old = kwargs.get("old")
    if kwargs.get("operation") == "UPDATE" and old is not None and plain(old.get("spec", {})) == new_spec:
        return
    try:
        parse_spec(new_spec)
    except SpecError as exc:
        raise kopf.AdmissionError(str(exc), code=422) from exc


async def validate_policy(spec: kopf.Spec, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    """The namespace's TargetPolicy; a spec that does not parse is validate_spec's to refuse."""
    new_spec = plain(spec)
    old = kwargs.get("old")
    if kwargs.get("operation") == "UPDATE" and old is not None and plain(old.get("spec", {})) == new_spec:
        return
    try:
        parsed = parse_spec(new_spec)
    except SpecError:
        return
    refusal = await policy_refusal(parsed, namespace, memo) if namespace else None
    if refusal is not None:
        raise kopf.AdmissionError(refusal, code=403)


async def policy_refusal(spec: ScheduledJobSpec, namespace: str, memo: kopf.Memo) -> str | None:
    """Why the namespace's policy refuses this spec, or None."""
    book = runtime_of(memo).policy_book
    if book is None:
        return foreign_ref_refusal(spec.params, namespace)
    return await book.refusal(spec, namespace)


def register(registry: kopf.OperatorRegistry | None = None) -> None:
    """Add the handler; only when a webhook server is configured, since kopf refuses to start
    with admission handlers and nowhere to serve them."""
    kopf.on.validate(
        GROUP, VERSION, PLURAL, id="validate-spec", operations=["CREATE", "UPDATE"], ignore_failures=True,
        registry=registry,
    )(validate_spec)
    kopf.on.validate(
        GROUP, VERSION, PLURAL, id="validate-policy", operations=["CREATE", "UPDATE"], ignore_failures=True,
        registry=registry,
    )(validate_policy)
