"""The registry covers every exported part: a new layer, loss, function, optimizer or
schedule fails here until it has an entry in ``registry.py`` (and so runs through every
generic property)."""
import inspect

import pytest

import xpnet as xn

from . import registry


def _defined_in(module):
    """The public classes and functions a module defines (not ones it imports)."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return set(names)
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and getattr(value, "__module__", None) == module.__name__}


MODULES = {"nn": xn.nn, "functional": xn.functional, "optim": xn.optim, "schedules": xn.optim.schedules,
           "augment": xn.augment}


@pytest.mark.parametrize("where", list(MODULES))
def test_every_export_is_registered(where):
    exported = _defined_in(MODULES[where])
    missing = sorted(exported - registry.registered_names()[where])
    assert not missing, (f"xn.{where} exports {missing} with no entry in tests/conformance/registry.py. Add one "
                         f"(sample inputs, a plain NumPy reference, the extremes of its hyperparameters and "
                         f"the arguments it must refuse), so the generic properties cover it.")


@pytest.mark.parametrize("where", list(MODULES))
def test_registry_names_only_what_exists(where):
    stale = sorted(registry.registered_names()[where] - _defined_in(MODULES[where]))
    assert not stale, f"tests/conformance/registry.py registers {stale}, which xn.{where} no longer exports."


def test_every_registered_layer_has_samples_and_a_reference_where_deterministic():
    for entry in registry.LAYERS:
        assert entry.samples, entry.name
        assert any(s.reference is not None for s in entry.samples), entry.name
