"""Durations in the config and on the command line: ``250ms``, ``30s``, ``2m``, ``1h``, ``30d``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Accept ``30s``, ``250ms``, ``2m``, ``1h``, ``30d`` or a plain number of seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 250ms, 30s, 2m, 30d)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
