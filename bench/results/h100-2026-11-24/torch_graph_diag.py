"""Which step corrupts memory it does not own? Run from the repository root on a GPU:
    python3 bench/results/h100-2026-11-24/torch_graph_diag.py eager|graph|torch|all
(the run of 2026-11-24 used this file as .devdata/diag.py; its output is torch-graph-diag.txt)."""
import sys

sys.path.insert(0, "bench")
import cupy  # noqa: E402
import torch  # noqa: E402
from models import _data, _references, _torch_regularised, _xpnet_steps, regularised_mlp  # noqa: E402

import xpnet as xn  # noqa: E402

which = sys.argv[1]
dev = xn.Device("cuda")
x, t = _data(100, (784,))
steps = _xpnet_steps(regularised_mlp, x, t, dev)
ref = torch.arange(1 << 16, device="cuda")
sentinel_t = ref.clone()
sentinel_c = cupy.arange(1 << 16)
tt = torch.from_numpy(t).to("cuda")
names = {"eager": ["xpnet"], "graph": ["xpnet-graph"], "torch": [], "all": ["xpnet", "xpnet-graph"]}[which]
if which in ("torch", "all"):
    steps.update(_references(_torch_regularised, x, t, dev))
    names += ["torch", "torch-graph"]
for name in names:
    for i in range(3):
        steps[name]()
        cupy.cuda.Device().synchronize()
        ok_t = bool((sentinel_t == ref).all())
        ok_c = bool((sentinel_c == cupy.arange(1 << 16)).all())
        ok_l = bool((tt == torch.from_numpy(t).to("cuda")).all())
        print(name, i, "torch sentinel", ok_t, "cupy sentinel", ok_c, "torch labels", ok_l, flush=True)
