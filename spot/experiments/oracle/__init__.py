"""SPoT-ON: oracle-guided neighbourhood search over token positions (§3.2, Eq. 3), and the experiments built on it.

* :mod:`spot.experiments.oracle.search` — the search (:func:`oracle_search`) and the placements it makes (``spot_on``,
  ``spot_on_ascent``, ``spot_on_random_label``, and the controls ``spot_on_random_target`` and
  ``spot_on_label_free``); the saliency score (Eq. 4) and gain (Eq. 5).
* :mod:`spot.experiments.oracle.tables` — :func:`oracle_experiments`: Tables 1, 2, 3, 5 (SPoT-ON rows) and 6, one function each,
  and Figure 4's trajectories, and the controls (what SPoT-ON's gain measures; :func:`phase_scrambled`: the
  blank images); :mod:`spot.experiments.oracle.transfer` — Table 4; :mod:`spot.experiments.oracle.trajectories` — their file.
* :mod:`spot.experiments.oracle.settings` — the ``oracle:`` and ``transfer:`` config sections; :mod:`spot.experiments.oracle.experiment` — the
  ``spot oracle`` and ``spot transfer`` commands.
"""
from .search import (SearchSetting, SpotOn, SpotOnAscent, SpotOnLabelFree, SpotOnRandomLabel, SpotOnRandomTarget,
                     correct, oracle_search, random_other_labels, relative_saliency_gain, saliency_scores)
from .settings import ControlSettings, OracleSettings, TrajectorySettings, TransferSettings
from .tables import ROW_COLUMNS, TABLES, KnnBank, oracle_experiments, phase_scrambled
from .trajectories import write_trajectories
from .transfer import TRANSFER_COLUMNS, transfer

__all__ = ["SearchSetting", "SpotOn", "SpotOnAscent", "SpotOnRandomLabel", "SpotOnRandomTarget", "SpotOnLabelFree",
           "random_other_labels", "OracleSettings", "TrajectorySettings", "ControlSettings", "TransferSettings",
           "oracle_search", "correct", "relative_saliency_gain", "saliency_scores", "oracle_experiments", "KnnBank",
           "phase_scrambled", "transfer", "write_trajectories", "TABLES", "ROW_COLUMNS", "TRANSFER_COLUMNS"]
