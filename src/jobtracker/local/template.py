"""Reads template.yaml and resolves CloudFormation intrinsics, so the offline stack is built from the
same resource list as the deployed one (no second list of names to keep in step).

Only what this project's template uses is supported: Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Equals,
Fn::Not, Fn::Join, Fn::FindInMap and Conditions; anything else raises, so a template change cannot be silently
mis-read offline. cfn-lint's own loader would also parse the tags, but resolving values is ours to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

NO_VALUE = object()


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(name: str, *, split_dots: bool = False) -> Callable[[yaml.Loader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if split_dots:
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


_CfnLoader.add_constructor("!Ref", _tag("Ref"))
_CfnLoader.add_constructor("!GetAtt", _tag("Fn::GetAtt", split_dots=True))
for _name in ("Sub", "If", "Equals", "Not", "Join", "And", "Or", "Select", "Split", "FindInMap", "Base64"):
    _CfnLoader.add_constructor(f"!{_name}", _tag(f"Fn::{_name}"))


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)


class Resolver:
    """Evaluates intrinsics against parameters, pseudo parameters and physical resource values.

    `lookup(logical_id, attribute)` returns a resource's Ref value (attribute None) or an attribute;
    the offline stack creates the resource on first lookup, which orders creation by dependency.
    """

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        pseudo: dict[str, str],
        lookup: Callable[[str, str | None], Any],
    ) -> None:
        self.template = template
        self.parameters = self._parameter_values(template, parameters)
        self.pseudo = pseudo
        self._lookup = lookup
        self._conditions: dict[str, bool] = {}

    @staticmethod
    def _parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
        declared = template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise KeyError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
        values = {}
        for name, spec in declared.items():
            if name in overrides:
                values[name] = str(overrides[name])
                pattern = spec.get("AllowedPattern")
                if pattern is not None and re.fullmatch(pattern, values[name]) is None:
                    # CloudFormation refuses such a value at deploy time; so does the offline stack.
                    raise ValueError(f"parameter {name}: {values[name]!r} does not match its AllowedPattern {pattern}")
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise KeyError(f"template parameter {name} has no default; pass a value")
        return values

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._lookup(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(v) for v in self.resolve(items))
            if key == "Fn::FindInMap":
                return self._find_in_map(*(self.resolve(v) for v in arg))
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise NotImplementedError(f"offline template resolver does not support {key}")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _find_in_map(self, name: str, top: str, second: str) -> Any:
        try:
            return self.template["Mappings"][name][top][second]
        except KeyError:
            # CloudFormation's own words for a lookup that does not exist (it stops the deployment).
            raise KeyError(f"Unable to get mapping for {name}::{top}::{second}") from None

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._lookup(name, None)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self._lookup(logical, attribute))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def function_environment(template: dict[str, Any], resolver: Resolver, function: str | None = None) -> dict[str, str]:
    """The environment variables a function gets as SAM builds it: Globals merged with the function's own
    (None: Globals only), resolved."""
    variables = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    if function is not None:
        own = template["Resources"][function].get("Properties", {}).get("Environment", {}).get("Variables", {})
        variables.update(own)
    return {name: str(value) for name, value in resolver.resolve(variables).items()}


def substitute_definition(definition: str, substitutions: dict[str, Any]) -> str:
    """DefinitionSubstitutions as CloudFormation applies them: ${Name} in the ASL text."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise KeyError(f"ASL placeholder ${{{name}}} has no DefinitionSubstitutions entry")
        return str(substitutions[name])

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", replace, definition)
