"""The JSON examples of the char pmslink HTTPPMS spec, extracted verbatim from docs/specs/.

The spec is a text export; each example is a JSON object starting on a line of its own after a
"JSON Example", "Request" or "Response" label. Examples that are not valid JSON in the spec itself (the
GET_REQUEST response, which holds a placeholder) are reported as skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[1] / "docs" / "specs" / "charpmslink-httppms-equipment-basic-api.txt"


@dataclass(frozen=True)
class Example:
    section: str  # "pms>pmslink" (records returned by GET_REQUEST) or "pmslink>pms" (requests)
    line: int
    body: dict[str, Any]


def _objects(text: str) -> list[tuple[int, str]]:
    """Top-level {...} blocks that start at the beginning of a line, with their line numbers."""
    out = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for number, line in enumerate(lines):
        if not line.startswith("{"):
            continue
        depth, start = 0, offsets[number]
        for pos in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                out.append((number + 1, text[start : pos + 1]))
                break
    return out


def spec_examples() -> tuple[list[Example], list[int]]:
    text = SPEC.read_text(encoding="utf-8")
    boundary = text.index("\npmslink > PMS\n")
    examples, skipped = [], []
    for line, block in _objects(text):
        try:
            body = json.loads(block)
        except json.JSONDecodeError:
            skipped.append(line)
            continue
        position = sum(len(x) + 1 for x in text.splitlines()[: line - 1])
        examples.append(Example("pms>pmslink" if position < boundary else "pmslink>pms", line, body))
    return examples, skipped


def requests_to_pms() -> list[Example]:
    """Requests an integrated system sends (they carry an action and are not answers)."""
    return [e for e in spec_examples()[0] if "action" in e.body
            and (e.section == "pmslink>pms" or e.body["action"].strip() == "GET_REQUEST")]


def records_from_pms() -> list[Example]:
    """Records the PMS queues for GET_REQUEST (BOOKING, RS, MUR, COS, WMSG, WAKE, DND, MSGTXT)."""
    return [e for e in spec_examples()[0]
            if e.section == "pms>pmslink" and "action" in e.body and e.body["action"].strip() != "GET_REQUEST"]
