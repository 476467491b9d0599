import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import spot  # noqa: E402


def test_plot_positions_draws_windows_grid_and_trajectories():
    image = torch.rand(3, 48, 64)
    pos = spot.sample_positions("isotropic", 6, 1, (48, 64))[0]
    ax = spot.plot_positions(image, pos, 8, grid_patch=8)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 6
    # a window is drawn centred on its position in pixel coordinates (pixel i spans [i, i+1))
    y, x = (pos[0] * torch.tensor([48.0, 64.0])).tolist()
    assert rects[0].get_xy() == (x - 4, y - 4) and rects[0].get_width() == 8
    plt.close("all")
    traj = torch.cumsum(torch.full((5, 3, 2), 0.02), 0)
    ax = spot.plot_positions(image, window=4, trajectory=traj)
    assert len(ax.collections) >= 3 and len([p for p in ax.patches if isinstance(p, Rectangle)]) == 3
    plt.close("all")


def test_demo_command_writes_results_with_provenance(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "spot", "demo", "--out", str(out), "--epochs", "1",
                           "--retrofit-epochs", "1", "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "demo_results.json").read_text())
    assert result["grid_equivalence_max_abs_diff"] <= 1e-5
    budgets = {r["num_tokens"] for r in result["rows"]}
    assert budgets == {2, 4, 8, 16}
    assert {"code", "config", "seed", "software", "device"} <= set(result["provenance"])
    assert (out / "demo_positions.png").stat().st_size > 0 and "| method |" in (out / "demo_results.md").read_text()
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_cli_reports_bad_arguments():
    proc = subprocess.run([sys.executable, "-m", "spot", "nonsense"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
