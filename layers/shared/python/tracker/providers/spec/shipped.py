"""The specs that ship with the functions: ``specs.json`` beside this module, written from the project's
``specs/*.yaml`` at build time (``make specs``; tests/unit/test_spec_bundle.py keeps it in step).

The job-type catalogue needs only a few facts of each spec when a function starts (its name, title,
in-flight budget, whether it can start jobs, the template parameters it names), so those are read with
the standard library; the full spec is validated with its pydantic model only when a job of that type is
created or run (building those models costs a cold start about 150 ms that most invocations never need).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracker.providers.spec.model import ProviderSpec

BUNDLE_PATH = Path(__file__).with_name("specs.json")


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What the catalogue knows of a shipped spec before validating it."""

    name: str
    title: str
    in_flight: int
    starts_jobs: bool  # False: jobs of this type are only tracked (the spec has no `start`)
    parameters: tuple[str, ...]  # template parameters it names: its base URL's and its secret's

    @property
    def job_type(self) -> str:
        return "http:" + self.name


def _facts(name: str, body: dict[str, Any]) -> SpecFacts:
    parameters = []
    base_url = body.get("baseUrl")
    if isinstance(base_url, dict):
        parameters.append(str(base_url["parameter"]))
    secret = body["auth"]["secret"]
    if secret.get("parameter"):
        parameters.append(str(secret["parameter"]))
    return SpecFacts(name, str(body["title"]), int(body["inFlight"]), "start" in body, tuple(parameters))


@cache
def _document(path: Path = BUNDLE_PATH) -> dict[str, Any]:
    if not path.is_file():
        return {"specs": {}}
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("specs"), dict):
        raise RuntimeError(f"{path} is not a spec bundle; rebuild it with `make specs`")
    return document


def facts(path: Path = BUNDLE_PATH) -> tuple[SpecFacts, ...]:
    """Every shipped spec's facts, by name."""
    return tuple(_facts(name, body) for name, body in sorted(_document(path)["specs"].items()))


def template_parameters(path: Path = BUNDLE_PATH) -> tuple[str, ...]:
    """Every template parameter a shipped spec names (each reaches the functions as an environment variable
    of the same name)."""
    return tuple(dict.fromkeys(p for entry in facts(path) for p in entry.parameters))


@cache
def spec(name: str) -> ProviderSpec:
    """A shipped spec, validated (once per process)."""
    from tracker.providers.spec.loader import spec_from_document

    body = _document()["specs"].get(name)
    if body is None:
        raise KeyError(f"no shipped spec {name!r}")
    return spec_from_document(body, source=f"{BUNDLE_PATH.name}#{name}", expected_name=name)
