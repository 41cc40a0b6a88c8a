"""Build local files in the raw hub formats of APPS and LiveCodeBench from ``../shared/data`` (real rows),
so the loaders are exercised on exactly what ``hf_hub_download`` would hand them."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def encode_private(tests: list[dict[str, Any]]) -> str:
    """LiveCodeBench's compressed private tests: JSON string → pickle → zlib → base64."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def apps_raw_row(row: dict[str, Any]) -> dict[str, Any]:
    """A normalized shared-data APPS row back in the codeparrot/apps schema (JSON strings)."""
    io: dict[str, Any] = {"inputs": row["inputs"], "outputs": row["outputs"]}
    if row.get("fn_name"):
        io["fn_name"] = row["fn_name"]
    return {
        "problem_id": row["problem_id"],
        "question": row["question"],
        "solutions": json.dumps(row["solutions"]) if row["solutions"] else "",
        "input_output": json.dumps(io),
        "difficulty": row["difficulty"],
        "url": row.get("url") or "",
        "starter_code": row.get("starter_code") or "",
    }


def lcb_raw_row(row: dict[str, Any], *, compress: bool) -> dict[str, Any]:
    """A normalized shared-data LiveCodeBench row back in the code_generation_lite schema."""
    public = [{k: t[k] for k in ("input", "output", "testtype")} for t in row["tests"] if t["public"]]
    private = [{k: t[k] for k in ("input", "output", "testtype")} for t in row["tests"] if not t["public"]]
    return {
        "question_title": row["question_title"],
        "question_content": row["question"],
        "platform": row["platform"],
        "question_id": row["question_id"],
        "contest_id": row["contest_id"],
        "contest_date": row["contest_date"],
        "starter_code": row["starter_code"],
        "difficulty": row["difficulty"],
        "public_test_cases": json.dumps(public),
        "private_test_cases": encode_private(private) if compress else json.dumps(private),
        "metadata": json.dumps({"func_name": row["fn_name"]} if row.get("fn_name") else {}),
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
