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

from .._files import mode_for, write_atomically, write_temporary
from ..transfer import array_or_host
from .mnist import _sha256  # one file checksum for every dataset

RECORD = "dataset.json"


def to_memmap(folder, x, t) -> Path:
    """Write ``x`` and ``t`` (host arrays, or anything ``numpy.asarray`` takes) as ``.npy``
    files in ``folder`` with a checksum record; returns the folder.

    Each array is written whole to a temporary file in the folder first, then renamed over
    its ``.npy``, as ``xn.save`` does: rewriting a set from arrays memory-mapped from that
    same set (``x, t = load_memmap(folder); to_memmap(folder, x * 2, t)``) works, and a
    mapping taken before keeps reading the old file. The old record is removed before the
    first rename and the new one written last (atomically), so a folder with a record
    holds a complete set, and an interrupted rewrite leaves a folder that ``load_memmap``
    says was not finished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x": array_or_host(x, "to_memmap: x"), "t": array_or_host(t, "to_memmap: t")}
    if len(arrays["x"]) != len(arrays["t"]):
        raise ValueError(f"to_memmap: x has {len(arrays['x'])} samples but t has {len(arrays['t'])}.")
    record = {"format": "xpnet-memmap", "version": 1, "arrays": {}}
    record_mode, written = mode_for(folder / RECORD), {}
    try:
        for name, array in arrays.items():
            written[name] = write_temporary(folder / f"{name}.npy",
                                            lambda f, array=array: numpy.save(f, numpy.asarray(array)))
            record["arrays"][name] = {"file": f"{name}.npy", "shape": list(array.shape),
                                      "dtype": str(array.dtype), "sha256": _sha256(written[name])}
        (folder / RECORD).unlink(missing_ok=True)  # from here until the new record: not a set
        for name, tmp in written.items():
            os.replace(tmp, folder / f"{name}.npy")
    finally:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)  # left only when writing failed
    write_atomically(folder / RECORD, lambda f: f.write(json.dumps(record, indent=1).encode()), mode=record_mode)
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
