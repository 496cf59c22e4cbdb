"""Physical units and numbers read from slide metadata (shared by the backends)."""

from __future__ import annotations

import math
from typing import Any

#: µm per unit, for OME-XML unit symbols and NGFF (UDUNITS-2) unit names alike.
UNIT_UM = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
}


def positive_float(value: Any) -> float | None:
    """``value`` as a finite float > 0, else None (metadata fields are often missing or junk)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 and math.isfinite(v) else None
