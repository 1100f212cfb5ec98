"""``--json``: one JSON document on stdout and nothing else there (progress and notes go to stderr).

Strict JSON that ``jq`` and ``json.loads`` accept: NaN and infinities (a diverged metric) become
``null``, paths become strings.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()
