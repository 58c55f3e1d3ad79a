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


_BUILT: dict[int, tuple[ProviderSpec, type[BaseModel]]] = {}  # by id(spec); the spec is kept so the id stays its own


def params_model(spec: ProviderSpec) -> type[BaseModel]:
    """A model whose fields are the spec's params (required ones required, unknown names refused)."""
    built = _BUILT.get(id(spec))
    if built is not None and built[0] is spec:
        return built[1]
    fields: dict[str, Any] = {}
    for name, param in spec.params.items():
        annotation = _TYPES[param.type]
        default = ... if param.required else None
        fields[name] = (
            annotation if param.required else annotation | None,
            Field(default, description=param.description),
        )
    model = create_model(f"Params_{spec.name}", __base__=_Params, **fields)
    if len(_BUILT) < 256:
        _BUILT[id(spec)] = (spec, model)
    return model
