"""A dataset saved as ``.npy`` files for memory-mapping, with a checksum record.

``to_memmap(folder, x, t)`` writes ``x.npy``, ``t.npy`` and ``dataset.json`` (shapes,
dtypes, SHA-256 of each file); ``load_memmap(folder)`` checks the record and returns the
two arrays memory-mapped read-only, so a set larger than memory trains through
``fit(model, loss, opt, (x, t))`` or an ``xn.data.Loader``: only the rows of each batch
are read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy

from ..transfer import array_or_host
from .mnist import _sha256  # one file checksum for every dataset

RECORD = "dataset.json"


def to_memmap(folder, x, t) -> Path:
    """Write ``x`` and ``t`` (host arrays, or anything ``numpy.asarray`` takes) as ``.npy``
    files in ``folder`` with a checksum record; returns the folder. The record is written
    last (atomically), so a folder with a record holds a complete set."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x": array_or_host(x, "to_memmap: x"), "t": array_or_host(t, "to_memmap: t")}
    if len(arrays["x"]) != len(arrays["t"]):
        raise ValueError(f"to_memmap: x has {len(arrays['x'])} samples but t has {len(arrays['t'])}.")
    record = {"format": "xpnet-memmap", "version": 1, "arrays": {}}
    for name, array in arrays.items():
        path = folder / f"{name}.npy"
        numpy.save(path, numpy.asarray(array))
        record["arrays"][name] = {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype),
                                  "sha256": _sha256(path)}
    tmp = folder / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / RECORD)
    return folder


def load_memmap(folder, verify: bool = True):
    """``(x, t)`` of a folder written by ``to_memmap``, memory-mapped read-only. With
    ``verify`` (the default) each file's SHA-256 is checked against the record first
    (it reads the files once); a mismatch or a missing record raises ValueError."""
    folder = Path(folder)
    try:
        record = json.loads((folder / RECORD).read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} has no {RECORD}: not a set written by xn.datasets.to_memmap "
                         f"(or its writing did not finish).") from None
    out = []
    for name in ("x", "t"):
        info = record["arrays"][name]
        path = folder / info["file"]
        if verify and _sha256(path) != info["sha256"]:
            raise ValueError(f"{path} does not match the SHA-256 in {folder / RECORD}; the file changed or "
                             f"is damaged. Write the set again with xn.datasets.to_memmap.")
        array = numpy.load(path, mmap_mode="r")
        if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
            raise ValueError(f"{path} holds {array.dtype} {array.shape}; the record says {info['dtype']} "
                             f"{tuple(info['shape'])}.")
        out.append(array)
    return tuple(out)
