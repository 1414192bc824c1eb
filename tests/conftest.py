"""Shared pytest configuration.

Tests marked ``cuda`` need numba-cuda and either a GPU or the simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported: CI runs them in a
second pytest process, see README). Without either they are skipped.
"""
import os

import pytest


def _cuda_possible():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    return os.path.exists("/dev/nvidiactl")


def pytest_collection_modifyitems(config, items):
    if _cuda_possible():
        return
    skip = pytest.mark.skip(reason="CUDA tests need a GPU or "
                                   "NUMBA_ENABLE_CUDASIM=1 (see README)")
    for item in items:
        if "cuda" in item.keywords or "gpu" in item.keywords:
            item.add_marker(skip)
