"""The conformance suite's bookkeeping: Hypothesis runs deterministically (a fixed seed, few
examples, no example database), and the session ends with a line counting the
(part, property, device) cases that ran, so a shrinking registry shows in the log."""
import collections

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("xpnet-conformance", max_examples=12, derandomize=True, deadline=None,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("xpnet-conformance")

_CASES = collections.Counter()  # outcome -> count
_PARTS, _PROPERTIES, _DEVICES = set(), set(), set()


def _case(item):
    """(part, property, device) of a conformance test: the property is the test's name, the
    part its first parameter that is not the device, the device the fixture's id."""
    params = getattr(item, "callspec", None)
    params = dict(params.params) if params else {}
    device = params.pop("device", None)
    device = getattr(device, "kind", device) or "-"
    part = next((str(v) for k, v in params.items() if isinstance(v, (str, int))), "-")
    return part, item.originalname, str(device)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if "conformance" not in str(item.path) or report.when != "call" and not report.skipped:
        return
    if report.when == "call" or report.skipped:
        part, prop, device = _case(item)
        if "device" in item.fixturenames and device == "-":
            device = item.callspec.id.split("-")[-1] if hasattr(item, "callspec") else "-"
        _CASES[report.outcome] += 1
        if report.outcome != "skipped":
            _PARTS.add(part)
            _PROPERTIES.add(prop)
            _DEVICES.add(device)


def pytest_terminal_summary(terminalreporter):
    if sum(_CASES.values()):
        terminalreporter.write_line(
            f"conformance: {_CASES['passed'] + _CASES['failed']} (part, property, device) cases ran "
            f"({_CASES['passed']} passed, {_CASES['failed']} failed, {_CASES['skipped']} skipped) over "
            f"{len(_PARTS)} parts, {len(_PROPERTIES)} properties, devices {sorted(_DEVICES)}")
