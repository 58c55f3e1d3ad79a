"""Where every object of a job lives in the results bucket (the one place for these keys)."""

from __future__ import annotations


def source_key(job_id: str) -> str:
    """Inline API requests are staged here, then read by the same intake code as an upload."""
    return f"work/{job_id}/source.json"


def batch_key(job_id: str, index: int) -> str:
    return f"work/{job_id}/batches/{index:05d}.json"


def batch_lines_key(job_id: str, index: int) -> str:
    """The source line of each request of a batch (runs of [first line, count]), for reconciliation."""
    return f"work/{job_id}/batches/{index:05d}.lines.json"


def batch_manifest_key(job_id: str) -> str:
    """The JSON array the distributed Map's ItemReader iterates."""
    return f"work/{job_id}/batches.json"


def retry_manifest_key(job_id: str, attempt: int) -> str:
    """The batches a retry runs again (the Map of the retry execution reads this instead)."""
    return f"work/{job_id}/retry-{attempt}.json"


def batch_result_key(job_id: str, kind: str, index: int) -> str:
    return f"work/{job_id}/results/{kind}-{index:05d}.ndjson"


def batch_result_part_key(job_id: str, kind: str, index: int, part: int) -> str:
    """One stretch of a batch's result listing paged in one go (a listing throttled mid-way resumes in the
    next part); finalize stitches the parts in order. `kind`: imports, errors or unlisted."""
    return f"work/{job_id}/results/{kind}-{index:05d}-{part:04d}.ndjson"


def result_key(job_id: str, name: str) -> str:
    """name: imports.ndjson, errors.ndjson, rejected.ndjson, unlisted.ndjson, manifest.json or report.html."""
    return f"results/{job_id}/{name}"


RESULT_FILES = {
    "imports": "imports.ndjson",
    "errors": "errors.ndjson",
    "rejected": "rejected.ndjson",
    "unlisted": "unlisted.ndjson",
    "manifest": "manifest.json",
    "report": "report.html",
}
