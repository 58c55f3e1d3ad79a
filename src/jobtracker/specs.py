"""Provider spec files (``specs/*.yaml``): read with line numbers, list, bundle for Lambda.

YAML is read here, off Lambda, with PyYAML (a dependency of this package, not of the deployed layer:
see ``tracker.providers.spec.loader``). Each value's line comes from the YAML node marks, so a
validation error reads ``specs/databricks.yaml:14: status.state.rules[1].when: ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tracker.providers.spec.loader import (
    Location,
    SpecError,
    SpecProblem,
    bundle_json,
    field_text,
    spec_from_document,
)
from tracker.providers.spec.model import ProviderSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO_ROOT / "specs"
SPEC_SUFFIXES = (".yaml", ".yml")
MAX_SPEC_BYTES = 256 * 1024


def read_spec_file(path: Path, *, display: str | None = None) -> ProviderSpec:
    """Load and validate one spec file; its `name` must equal the file's stem. Raises SpecError."""
    source = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([SpecProblem(source, None, "", f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([SpecProblem(source, None, "", f"{len(raw)} bytes; a spec file is at most {MAX_SPEC_BYTES}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([SpecProblem(source, None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    return read_spec_text(text, source=source, expected_name=path.stem)


def read_spec_text(text: str, *, source: str, expected_name: str | None = None) -> ProviderSpec:
    document, lines = parse_yaml_with_lines(text, source=source)
    return spec_from_document(document, source=source, lines=lines, expected_name=expected_name)


def parse_yaml_with_lines(text: str, *, source: str) -> tuple[Any, dict[Location, int]]:
    """The document and the 1-based line of every mapping key and list item, by its path.
    Duplicate keys are an error (PyYAML would silently keep the last one)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError([SpecProblem(source, line, "", f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(source, None, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    lines: dict[Location, int] = {}
    problems: list[SpecProblem] = []
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _index(node, document, (), lines, problems, source)
    if problems:
        raise SpecError(problems)
    return document, lines


def _index(
    node: yaml.Node,
    value: Any,
    path: Location,
    lines: dict[Location, int],
    problems: list[SpecProblem],
    source: str,
) -> None:
    if isinstance(node, yaml.MappingNode) and isinstance(value, dict):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
                problems.append(
                    SpecProblem(
                        source,
                        line,
                        field_text(path),
                        f"key {key_node.value!r} reads as a {key_node.tag[18:]}; quote it",
                    )
                )
            if key_node.value in seen:
                where = field_text((*path, key_node.value))
                problems.append(
                    SpecProblem(source, line, where, f"duplicate key (first at line {seen[key_node.value]})")
                )
            seen.setdefault(key_node.value, line)
        if len(node.value) != len(value):
            return  # duplicates collapsed: keys no longer pair up with nodes
        for (key_node, value_node), key in zip(node.value, value.keys(), strict=True):
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index(value_node, value[key], (*path, key), lines, problems, source)
    elif isinstance(node, yaml.SequenceNode) and isinstance(value, list):
        for index, (item_node, item) in enumerate(zip(node.value, value, strict=True)):
            lines[(*path, index)] = item_node.start_mark.line + 1
            _index(item_node, item, (*path, index), lines, problems, source)


def spec_files(directory: Path = SPECS_DIR) -> Iterator[Path]:
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.suffix in SPEC_SUFFIXES and path.is_file():
            yield path


def shipped_specs(directory: Path = SPECS_DIR) -> list[ProviderSpec]:
    """Every spec of the folder, validated; one SpecError listing every problem of every file."""
    specs: list[ProviderSpec] = []
    problems: list[SpecProblem] = []
    for path in spec_files(directory):
        try:
            specs.append(read_spec_file(path, display=_display(path)))
        except SpecError as exc:
            problems += exc.problems
    names = [s.name for s in specs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(SpecProblem(str(directory), None, "name", f"{name!r} is declared by more than one file"))
    if problems:
        raise SpecError(problems)
    return specs


def bundle_text(directory: Path = SPECS_DIR) -> tuple[str, int]:
    """The JSON bundle of every spec in `directory`, validated, and how many it holds."""
    specs = shipped_specs(directory)
    return bundle_json(specs) + "\n", len(specs)


def write_bundle(out: Path, directory: Path = SPECS_DIR) -> int:
    """Validate every shipped spec and write the JSON bundle Lambda reads; returns the number of specs."""
    text, count = bundle_text(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return count


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
