"""Marking handler methods with what they serve, and finding the marked methods of an object.

An area (a class of command handlers, or of durable jobs) marks each handler method with a spec
(:class:`~agent_orchestrator.handlers.commands.CommandSpec`,
:class:`~agent_orchestrator.handlers.jobs.JobSpec`). A mark only records the spec on the
function: nothing is subscribed until the composition root includes the area on a router, which
walks the marked methods with :func:`marked`.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])
SpecT = TypeVar("SpecT")

_MARK = "__handler_spec__"


def marker(spec: object) -> Callable[[HandlerT], HandlerT]:
    """A decorator that records ``spec`` on the function it decorates, and changes nothing."""

    def mark(handler: HandlerT) -> HandlerT:
        setattr(handler, _MARK, spec)
        return handler

    return mark


def marked(area: object, kind: type[SpecT]) -> list[tuple[SpecT, Callable[..., Awaitable[Any]]]]:
    """The methods of ``area`` marked with a spec of type ``kind``, bound, in the order they are
    written (a subclass's after its bases'; a redefined one where its base had it)."""
    found: dict[str, tuple[SpecT, Callable[..., Awaitable[Any]]]] = {}
    for cls in reversed(type(area).__mro__):
        for name, value in vars(cls).items():
            spec = getattr(value, _MARK, None)
            if isinstance(spec, kind):
                found[name] = (spec, getattr(area, name))
    return list(found.values())
