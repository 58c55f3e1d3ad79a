"""The params a job of a spec type takes, as a pydantic model (the API and the CLI validate with it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from tracker.providers.spec.model import ProviderSpec

# JSON types, strictly: "7" is not an integer and true is not a number, so a job's params mean what they say.
_TYPES: dict[str, Any] = {
    "string": StrictStr,
    "integer": StrictInt,
    "number": StrictFloat | StrictInt,
    "boolean": StrictBool,
    "object": dict[str, Any],
    "array": list[Any],
}


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# by (id(spec), tracking); the spec is kept so the id stays its own
_BUILT: dict[tuple[int, bool], tuple[ProviderSpec, type[BaseModel]]] = {}


def params_model(spec: ProviderSpec, *, tracking: bool = False) -> type[BaseModel]:
    """A model whose fields are the spec's params (required ones required, defaults filled in, unknown names
    refused). ``tracking``: for a job started elsewhere, only the params its status and result requests
    use are required."""
    built = _BUILT.get((id(spec), tracking))
    if built is not None and built[0] is spec:
        return built[1]
    needed = spec.tracking_params if tracking else frozenset(n for n, p in spec.params.items() if p.required)
    fields: dict[str, Any] = {}
    for name, param in spec.params.items():
        annotation = _TYPES[param.type]
        required = name in needed
        fields[name] = (
            annotation if required else annotation | None,
            Field(... if required else param.default, description=param.description),
        )
    model = create_model(f"Params_{spec.name}", __base__=_Params, **fields)
    if len(_BUILT) < 256:
        _BUILT[(id(spec), tracking)] = (spec, model)
    return model
