import inspect
import os
import subprocess
import sys

import pytest

import xpnet as xn
from xpnet.backends import Backend
from xpnet.backends.numpy import NumpyBackend
from xpnet.backends.sim import SimBackend


def _public(cls):
    return {n: m for n, m in vars(cls).items() if not n.startswith("_") and callable(m)}


def _backend_classes():
    classes = [NumpyBackend, SimBackend]
    if "cupy" in sys.modules or xn.cuda_unavailable_reason() is None:
        from xpnet.backends.cupy import CupyBackend
        classes.append(CupyBackend)
    return classes


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_backends_define_no_public_method_the_base_lacks(cls):
    base = _public(Backend)
    for name, method in _public(cls).items():
        assert name in base, f"{cls.__name__}.{name} is not part of Backend"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(base[name]).parameters), name


def test_cupy_backend_module_is_consistent_without_importing_cupy():
    """Checks xpnet/backends/cupy.py's methods by its source, where CuPy cannot be imported."""
    import ast
    from pathlib import Path
    tree = ast.parse((Path(xn.__file__).parent / "backends" / "cupy.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CupyBackend")
    base = _public(Backend)
    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")):
        assert fn.name in base, fn.name
        assert [a.arg for a in fn.args.args] == list(inspect.signature(base[fn.name]).parameters)


def test_cuda_reason_is_none_or_says_what_is_missing():
    reason = xn.cuda_unavailable_reason()
    assert reason is None or any(w in reason for w in ("CuPy", "driver", "device"))


def test_cpu_backend_describes_its_blas():
    assert "BLAS" in xn.Device("cpu").backend.describe()


def test_no_generic_module_imports_cupy():
    """Backend-specific code lives only under xpnet/backends/."""
    from pathlib import Path
    root = Path(xn.__file__).parent
    for path in root.rglob("*.py"):
        if "backends" in path.parts:
            continue
        assert "import cupy" not in path.read_text(), path


def test_info_command_runs():
    out = subprocess.run([sys.executable, "-m", "xpnet", "info"], capture_output=True, text=True,
                         check=True, env={**os.environ, "XPNET_DEVICE": "cpu"}).stdout
    assert "NumPy" in out and "devices: cpu, sim:0" in out and "BLAS" in out
