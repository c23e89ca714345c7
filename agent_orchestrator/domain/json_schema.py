"""JSON Schema (2020-12) checks shared by templates and task input: every problem is listed,
each with the path of the value at fault, in ``ValidationFailed.details``."""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from referencing.exceptions import Unresolvable

from agent_orchestrator.domain.errors import ValidationFailed

_META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA)
_STRICT_META_VALIDATOR = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def violation_details(prefix: str, errors: Iterable[SchemaViolation]) -> list[dict[str, str]]:
    """``{path, message}`` of each violation, the path starting at ``prefix``, sorted by path."""
    found = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join([prefix, *(str(p) for p in error.absolute_path)])
        found.append({"path": path, "message": error.message})
    return found


def check_schema(schema: Mapping[str, Any], *, field: str, strict: bool = False) -> None:
    """Raise ValidationFailed, listing every problem, unless ``schema`` is valid 2020-12.

    ``strict`` also checks the formats the meta-schema names (a ``pattern`` must be a valid
    regular expression), so that the schema cannot fail later, when a value is checked."""
    meta = _STRICT_META_VALIDATOR if strict else _META_VALIDATOR
    details = violation_details(field, meta.iter_errors(schema))
    if details:
        raise ValidationFailed(f"{field} is not a valid JSON Schema (2020-12)", details)


def check_value(schema: Mapping[str, Any], value: Any, *, field: str, against: str) -> None:
    """Raise ValidationFailed, listing every failing path, unless ``value`` matches ``schema``.

    ``field`` names the value (the paths start with it) and ``against`` the schema in the
    message. A schema that cannot be applied (a ``$ref`` to nowhere, a bad pattern) is a
    ValidationFailed too, at the schema's path."""
    try:
        details = violation_details(field, Draft202012Validator(schema).iter_errors(value))
    except (Unresolvable, re.error) as exc:
        raise ValidationFailed(
            f"{against} cannot be applied: {exc}",
            [{"path": against, "message": str(exc)[:500]}],
        ) from exc
    if details:
        raise ValidationFailed(f"{field} does not match {against}", details)
