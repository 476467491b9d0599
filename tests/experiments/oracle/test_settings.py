"""The oracle's settings (spot.experiments.oracle.settings): the searches it registers and the controls' errors."""
import pytest
import torch

from spot.experiments.oracle import OracleSettings, TransferSettings, oracle_search, transfer

from .common import PositionsOnly, SIZE, _settings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_settings_name_the_searches_the_oracle_registers():
    """spot.settings.oracle.SEARCHES (torch-free: what a config naming a search is checked against while the DAG is
    built) are exactly the placements spot.experiments.oracle.search registers; the settings classes are the oracle's own."""
    import spot.experiments.oracle.search
    from spot.core.placement import PLACEMENTS
    from spot.experiments.pruning import PruningSettings
    from spot.settings import oracle as settings

    registered = [name for name, cls in PLACEMENTS.items() if cls.__module__ == spot.experiments.oracle.search.__name__]
    assert sorted(registered) == sorted(settings.SEARCHES) and len(set(settings.SEARCHES)) == len(settings.SEARCHES)
    assert OracleSettings is settings.OracleSettings and TransferSettings is settings.TransferSettings
    assert spot.experiments.oracle.search.SearchSetting is settings.SearchSetting
    assert PruningSettings(models={"evit": "prune_evit"}, equal_cost="evit",
                           equal_cost_priors=list(settings.SEARCHES)).validate()


def test_control_settings_errors():
    with pytest.raises(ValueError, match="oracle.controls.blank must be one of scrambled, background, mean"):
        _settings(controls={"blank": "white"})
    with pytest.raises(ValueError, match="oracle.controls.random_target must be true or false"):
        _settings(controls={"random_target": "yes"})
    with pytest.raises(ValueError, match="unknown key"):
        _settings(controls={"steer": True})
    with pytest.raises(ValueError, match="transfer.budgets"):
        TransferSettings(budgets=[4, 0]).validate()
    with pytest.raises(ValueError, match="objective must be one of"):
        oracle_search(PositionsOnly(), torch.zeros(1, 1, SIZE, SIZE), torch.zeros(1, dtype=torch.long),
                      torch.full((4, 2), 0.5), 1e-2, 2, objective="hinge")
    assert _settings(controls={"blank": None, "random_target": False, "label_free": False}).controls.any is False
