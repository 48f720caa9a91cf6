"""Session 5: what checking a kept MNIST decoded copy against its CRC-32 costs (the best of 20
zlib.crc32 passes over each decoded file), on the machine this runs on.

    XPNET_DATA_DIR=../shared/data python bench/results/cpu-2026-11-29/crc_cost.py
"""
import importlib
import time
import zlib

mnist = importlib.import_module("xpnet.datasets.mnist")

for key, (name, _) in mnist.FILES.items():
    data = mnist._decode(mnist.data_dir() / name)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        crc = zlib.crc32(data)
        times.append(time.perf_counter() - start)
    print(f"{key}: {data.nbytes / 1e6:.1f} MB, crc32 {crc:#010x}, best {min(times) * 1e3:.2f} ms")
