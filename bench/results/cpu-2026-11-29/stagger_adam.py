"""Adam step alone on the regularised MLP's flat buffers: separate allocations (4 KiB apart) vs staggered."""
import sys, timeit, numpy
import xpnet as xn
from xpnet import optim
def build():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(784,256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
        xn.nn.Affine(256,256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2), xn.nn.Affine(256,10))
orig = optim._flat_buffers
def separate(xp, names, total, dtype):
    return {n: xp.empty(total, dtype=dtype) for n in names}
res = {}
for label, fb in (("separate", separate), ("staggered", orig)):
    optim._flat_buffers = fb
    with xn.use_device("cpu"):
        m = build(); o = xn.optim.Adam(m); o.step()
        g = o._groups[0]
        print(label, "p,g,m,v start mod 4096:", [a.__array_interface__["data"][0] % 4096 for a in (g.p, g.g, g.state["m"], g.state["v"])], "params", g.p.size)
        res[label] = o
for r in range(3):
    for label, o in res.items():
        t = min(timeit.repeat(o.step, number=200, repeat=5)) / 200
        print(label, f"Adam.step {t*1e6:.1f} us")
