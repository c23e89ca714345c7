"""JSON values the service refuses although a parser reads them.

A NUL character in a string (PostgreSQL cannot store it) and a number that is not finite
(NaN and Infinity, which Python's and pydantic's parsers accept, and 1e400, which reads as
infinity): JSON cannot carry them, and written back they would become ``null``, so a state
merge would delete a key. The service and the bridge refuse them alike (``validation_error``).
"""

import json
import math
import re
from typing import Any

# Cheap signs that a body may hold a number JSON cannot carry: NaN or Infinity (which the
# parser accepts), a long exponent or a long run of digits (1e400 reads as infinity).
# Only then is the body walked.
_NON_FINITE_HINT = re.compile(rb"NaN|Infinity|[eE][+-]?[0-9]{3}|[0-9]{300}")


def refused_value(body: bytes) -> str | None:
    """Why a JSON body holds a value the service refuses, or None.

    A NUL character, which PostgreSQL cannot store; NaN, Infinity or a number too large for a
    double (1e400), which JSON cannot carry and which would otherwise become ``null``.
    """
    nul = b"\\u0000" in body
    if not nul and _NON_FINITE_HINT.search(body) is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON (or nested too deep): the model says so
    return refused_in(value)


def refused_in(value: Any) -> str | None:
    """Why a parsed JSON value holds what the service refuses (see :func:`refused_value`)."""
    if isinstance(value, str):
        return "strings must not contain the NUL character (\\u0000)" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else NON_FINITE
    if isinstance(value, dict):
        return next(
            (why for k, v in value.items() if (why := refused_in(k) or refused_in(v))), None
        )
    if isinstance(value, list):
        return next((why for v in value if (why := refused_in(v))), None)
    return None


NON_FINITE = "numbers must be finite: NaN, Infinity and numbers beyond a double (1e400) are refused"
