"""Issue 16, case 23: `make setup` picks the backend environment from the NVIDIA driver."""
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: whole examples, processes, benchmarks

ROOT = Path(__file__).resolve().parents[2]


def _pick(tmp_path, smi_output):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # absent for "no driver", whatever nvidia-smi this machine has
    if smi_output is not None:
        smi.write_text(f"#!/bin/sh\ncat <<'END'\n{smi_output}\nEND\n")
        smi.chmod(0o755)
    env = {**os.environ, "NVIDIA_SMI": str(smi)}
    return subprocess.run(["sh", "backends/pick.sh"], capture_output=True, text=True, cwd=ROOT, env=env).stdout.strip()


@pytest.mark.parametrize("smi, backend", [
    (None, "cpu"),
    ("| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |", "cuda12"),
    ("| NVIDIA-SMI 580.159.04  Driver Version: 580.159.04  CUDA Version: 13.0     |", "cuda13"),
    ("| NVIDIA-SMI 470.82.01   Driver Version: 470.82.01   CUDA Version: 11.4     |", "cpu"),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "cpu"),
], ids=["no-driver", "cuda12", "cuda13", "too-old", "broken-driver"])
def test_setup_picks_the_backend_from_the_driver(tmp_path, smi, backend):
    assert _pick(tmp_path, smi) == backend


def test_make_says_which_backend_and_why():
    dry = subprocess.run(["make", "-n", "setup", "BACKEND=cpu"], capture_output=True, text=True, cwd=ROOT)
    assert "BACKEND=cpu (as given)" in dry.stdout
