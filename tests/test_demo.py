"""The main job (``python -m adamsci demo``) on a smaller problem."""
import os
import subprocess
import sys

import numpy as np
import xarray as xr

from adamsci import demo


def test_demo_recovers_truth_and_writes_files(tmp_path):
    pytest_mpl = __import__("matplotlib")
    pytest_mpl.use("Agg")
    out = demo.main(points=50_000, batch_size=256, out=str(tmp_path),
                    quiet=True)
    assert out["within_3_se"] and out["agree_with_scipy"]
    assert np.all(out["perr"] > 0) and np.all(np.isfinite(out["perr"]))
    nc, png = out["paths"]
    assert os.path.getsize(png) > 10_000
    with xr.open_dataset(nc) as ds:
        assert ds.sizes["iteration"] >= 100
        assert list(ds.param.values) == ["amplitude", "tau", "offset"]
        # the recorded end point is Adam's, which the polish moved by
        # less than three standard errors
        assert np.all(np.abs(ds.x.isel(iteration=-1) - out["popt"]) <
                      3 * out["perr"])


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "adamsci", "demo", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--points" in proc.stdout and "netCDF" in proc.stdout
