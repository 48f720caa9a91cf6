"""Adam step alone on the regularised MLP's flat buffers: allocated one by one (as before
issue 26) against the staggered single allocation (optim.flat_buffers)."""
import timeit

import xpnet as xn
from xpnet import optim


def build():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(784, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                            xn.nn.Affine(256, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                            xn.nn.Affine(256, 10))


def separate(xp, names, total, dtype):
    return {n: xp.empty(total, dtype=dtype) for n in names}


staggered = optim.flat_buffers
res = {}
for label, layout in (("separate", separate), ("staggered", staggered)):
    optim.flat_buffers = layout
    with xn.use_device("cpu"):
        model = build()
        opt = xn.optim.Adam(model)
        opt.step()
        g = opt._groups[0]
        starts = [a.__array_interface__["data"][0] % 4096 for a in (g.p, g.g, g.state["m"], g.state["v"])]
        print(label, "p,g,m,v start mod 4096:", starts, "params", g.p.size)
        res[label] = opt
for _ in range(3):
    for label, opt in res.items():
        t = min(timeit.repeat(opt.step, number=200, repeat=5)) / 200
        print(label, f"Adam.step {t * 1e6:.1f} us")
