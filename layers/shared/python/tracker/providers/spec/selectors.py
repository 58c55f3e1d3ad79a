"""Selectors: where a value sits in a provider's JSON answer (``state.life_cycle_state``, ``runs[0].id``).

The grammar is a deliberately small subset of JSONPath: dotted field names and ``[N]`` list indexes,
with an optional leading ``$.``. It is written here rather than taken from a library because:

- a state mapping needs to tell "the field is absent" from "the field is null" (a Databricks run has
  no ``result_state`` until it ends); JMESPath (in the Lambda runtime with botocore) answers ``None``
  for both;
- a selector must pick exactly one value; wildcards, filters and recursive descent (jsonpath-ng,
  bundled only in the Powertools layer) can return several, which no state rule can use;
- an unsupported expression must be refused when the spec is loaded, with a message saying what is
  supported, not fail on the first answer of a running job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FIRST = re.compile(r"(?P<field>[A-Za-z_][A-Za-z0-9_\-]*)|\[(?P<index>\d+)\]")
_NEXT = re.compile(r"\.(?P<field>[A-Za-z_][A-Za-z0-9_\-]*)|\[(?P<index>\d+)\]")
SYNTAX_HELP = "use dotted field names and [N] list indexes, e.g. state.life_cycle_state or runs[0].run_id"


class SelectorSyntaxError(ValueError):
    """The selector text is outside the supported grammar."""


class SelectorMissError(LookupError):
    """The selector matched nothing in an answer; ``reason`` says where the path stopped."""

    def __init__(self, selector: str, reason: str) -> None:
        super().__init__(f"selector {selector!r} matched nothing: {reason}")
        self.selector = selector
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    steps: tuple[str | int, ...]

    def find(self, document: Any) -> Any:
        """The value at this path; raises SelectorMissError when a field is absent or an index is past the end.
        A JSON null is a value (returned as None), not a miss."""
        current = document
        walked = "$"
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(current, list):
                    raise SelectorMissError(self.text, f"{walked} is {_kind(current)}, not a list")
                if step >= len(current):
                    raise SelectorMissError(self.text, f"{walked} has {len(current)} item(s), no [{step}]")
                current = current[step]
                walked += f"[{step}]"
            else:
                if not isinstance(current, dict):
                    raise SelectorMissError(self.text, f"{walked} is {_kind(current)}, not an object")
                if step not in current:
                    keys = ", ".join(sorted(str(k) for k in current)[:8]) or "none"
                    raise SelectorMissError(self.text, f"{walked} has no field {step!r} (fields: {keys})")
                current = current[step]
                walked += f".{step}"
        return current

    def __str__(self) -> str:
        return self.text


def parse_selector(text: str) -> Selector:
    """Parse ``state.life_cycle_state``, ``$.data.status`` or ``runs[0].run_id``."""
    if not isinstance(text, str) or not text.strip():
        raise SelectorSyntaxError(f"a selector must be a non-empty string; {SYNTAX_HELP}")
    body = text.strip()
    if body.startswith("$"):
        body = body[1:]
        body = body[1:] if body.startswith(".") else body
    if not body:
        raise SelectorSyntaxError(f"selector {text!r} selects the whole answer; {SYNTAX_HELP}")
    steps: list[str | int] = []
    position = 0
    while position < len(body):
        match = (_NEXT if steps else _FIRST).match(body, position)
        if not match:
            raise SelectorSyntaxError(f"unsupported selector syntax {text!r} at {body[position:]!r}; {SYNTAX_HELP}")
        field = match.group("field")
        steps.append(field if field is not None else int(match.group("index")))
        position = match.end()
    return Selector(text=text, steps=tuple(steps))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
