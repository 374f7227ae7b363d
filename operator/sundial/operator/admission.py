"""Validating admission: refuse a spec the operator could not arm, at `kubectl apply` time.

The message is `parse_spec`'s own (`spec.schedule: ...`), so kubectl prints exactly what the
Ready condition would have said. The webhook is a convenience, not the authority: it is
registered with failurePolicy Ignore, so while no operator serves it ScheduledJobs can still be
applied (workers keep firing the others), and the reconcile handler reports the same problem
as Ready=False.
"""

from __future__ import annotations

from typing import Any

import kopf

from sundial.core.crd import GROUP, PLURAL, VERSION
from sundial.core.spec import SpecError, parse_spec
from sundial.operator.reconcile import plain


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


def register(registry: kopf.OperatorRegistry | None = None) -> None:
    """Add the handler; only when a webhook server is configured, since kopf refuses to start
    with admission handlers and nowhere to serve them."""
    kopf.on.validate(
        GROUP, VERSION, PLURAL, id="validate-spec", operations=["CREATE", "UPDATE"], ignore_failures=True,
        registry=registry,
    )(validate_spec)
