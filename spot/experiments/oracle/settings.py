"""The ``oracle:`` and ``transfer:`` sections of the config, typed and validated: defined without torch in
:mod:`spot.settings.oracle` (what the workflow checks a config with), re-exported here for the oracle's modules."""
from __future__ import annotations

from ...settings.oracle import (BLANKS, ControlSettings, OracleSettings, SearchSetting, TrajectorySettings,
                                TransferSettings)

__all__ = ["OracleSettings", "TrajectorySettings", "ControlSettings", "TransferSettings"]
