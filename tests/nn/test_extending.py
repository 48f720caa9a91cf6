"""docs/extending.md runs as written: its code blocks, in order, as one script, on every
device (issue 20: the guide's layers check and train on cpu and sim, and cuda)."""
import re
from pathlib import Path

import xpnet as xn

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_the_guide_runs_on_every_device(device):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 8
    namespace = {"__name__": "guide"}
    exec(compile("\n".join(blocks), str(GUIDE), "exec"), namespace)  # noqa: S102 (our own document)
    model = namespace["model"]
    assert model.device == device and all(xn.device_of(p) == device for p in model.params().values())
