"""Turning a decoded spec document into a ProviderSpec, with errors that name the field and the line.

YAML is parsed off Lambda only. PyYAML is neither in the Lambda Python runtime nor in the Powertools
layer (its ``[all]`` extras are pydantic, aws-xray-sdk, fastjsonschema, aws-encryption-sdk, jsonpath-ng,
pyjwt...), and the layer must depend on nothing else. So the command line, the offline runtime and the
tests read the YAML files (``jobtracker.specs``), and what ships to Lambda is a JSON bundle of the
validated specs written at build time (:func:`bundle_json`), read here with the standard library.
Line numbers matter where a person edits a file; the bundle is machine-written and re-validated on load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tracker.providers.spec.model import ProviderSpec

BUNDLE_VERSION = 1
Location = tuple[str | int, ...]
# A model-level check names the field it is about as a path relative to the model, one finding per line:
# "rules[1].when: lifecyle not in fields".
_RELATIVE = re.compile(r"^(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*): (?P<message>.+)$")
_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z_][A-Za-z0-9_-]*)")


@dataclass(frozen=True, slots=True)
class SpecProblem:
    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(ValueError):
    """A spec that cannot be used; ``problems`` holds one line per finding, each naming field and line."""

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def field_text(location: Location) -> str:
    """('status', 'state', 'rules', 1, 'when') -> status.state.rules[1].when"""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def spec_from_document(
    document: Any, *, source: str, lines: Mapping[Location, int] | None = None, expected_name: str | None = None
) -> ProviderSpec:
    """Validate a decoded spec; raises SpecError whose problems name each field and, given `lines`, its line."""
    lines = lines or {}
    if not isinstance(document, dict):
        raise SpecError([SpecProblem(source, 1, "", f"a spec is a mapping of fields, not {type(document).__name__}")])
    try:
        spec = ProviderSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(_problems(exc, source, lines)) from None
    if expected_name is not None and spec.name != expected_name:
        raise SpecError(
            [
                SpecProblem(
                    source, lines.get(("name",)), "name", f"{spec.name!r} must match the file name {expected_name!r}"
                )
            ]
        )
    return spec


def _problems(exc: ValidationError, source: str, lines: Mapping[Location, int]) -> list[SpecProblem]:
    problems = []
    errors = exc.errors(include_url=False)
    # A value that fits no branch of a union (a selector text or a StateField) gets one error per branch;
    # when one branch says what is wrong with the value, the others' "should be a dictionary" is noise.
    explained = {_document_location(tuple(e["loc"]), lines) for e in errors if e["type"] == "value_error"}
    for error in errors:
        if error["type"].endswith("_type") and _document_location(tuple(error["loc"]), lines) in explained:
            continue
        base = tuple(error["loc"])
        text = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            text = "required field is missing"
        elif error["type"] == "extra_forbidden":
            text = "unknown field (check the spelling; `jobtracker providers schema` lists every field)"
        for line_text in text.splitlines():
            loc, message = base, line_text
            relative = _RELATIVE.match(line_text)
            if error["type"] == "value_error" and relative:
                loc = (*base, *_parts(relative.group("path")))
                message = relative.group("message")
            location = _document_location(loc, lines)
            problems.append(SpecProblem(source, _line(location, lines), field_text(location), message))
    return sorted(problems, key=lambda p: (p.line or 0, p.field))


def _parts(path: str) -> list[str | int]:
    return [int(index) if index else name for index, name in _PART.findall(path)]


def _document_location(loc: Location, lines: Mapping[Location, int]) -> Location:
    """The part of a pydantic error location that exists in the document: pydantic adds union tags
    ('bearer', 'str', 'StateField', 'function-after[...]') that no file contains."""
    if not lines:
        return tuple(part for part in loc if not _is_tag(part))
    kept: list[str | int] = []
    after = 0  # index in loc just past the last part found in the document
    for index, part in enumerate(loc):
        if (*kept, part) in lines:
            kept.append(part)
            after = index + 1
    tail = [part for part in loc[after:] if not _is_tag(part)]
    kept.extend(tail)  # a missing field, or one a model check names below: shown at its parent's line
    return tuple(kept)


def _is_tag(part: str | int) -> bool:
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "none", "bearer", "basic", "header")
        or part[:1].isupper()
        or part.startswith(("function-", "list[", "dict[", "union["))
    )


def _line(location: Location, lines: Mapping[Location, int]) -> int | None:
    for end in range(len(location), -1, -1):
        line = lines.get(location[:end])
        if line is not None:
            return line
    return None


# -- the bundle that ships to Lambda ---------------------------------------------------------------
def bundle_json(specs: Iterable[ProviderSpec]) -> str:
    """Every spec, validated, as one JSON document (written at build time into the functions' package)."""
    return json.dumps(
        {
            "version": BUNDLE_VERSION,
            "specs": {s.name: s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in specs},
        },
        indent=1,
        sort_keys=True,
    )


def load_bundle(path: str | Path) -> dict[str, ProviderSpec]:
    """Specs by name from a bundle file; each is validated again (a hand-edited bundle gets a clear error)."""
    source = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError([SpecProblem(source, None, "", f"cannot read the spec bundle: {exc}")]) from None
    if (
        not isinstance(document, dict)
        or document.get("version") != BUNDLE_VERSION
        or not isinstance(document.get("specs"), dict)
    ):
        raise SpecError([SpecProblem(source, None, "", f"not a version {BUNDLE_VERSION} spec bundle")])
    return {
        name: spec_from_document(body, source=f"{source}#{name}", expected_name=name)
        for name, body in sorted(document["specs"].items())
    }
