"""The contract fixtures vendored in tests/contract/fixtures/ (see its README for where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FULLSTORY_SPECS = FIXTURES / "fullstory"  # users.swagger.json, events.swagger.json (MIT, see LICENSE)
OPERATION_SCHEMA = FIXTURES / "seeds" / "fullstory-operation.schema.json"
JOB_RESPONSE_SCHEMA = FIXTURES / "seeds" / "keboola-job-response.schema.json"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
