"""MNIST from the four original IDX files, checked against their published SHA-256.

Files are looked for in ``$XPNET_DATA_DIR/mnist/`` (default ``~/.cache/xpnet/mnist/``),
downloaded there when absent and the network allows, and refused when their checksum
is wrong. Arrays come back on the host; moving them is the caller's explicit step.

Decompressing the 47 MB of training images is most of the time a load takes, so after a file
passes its checksum its decoded bytes are kept as a .npy file in
``$XPNET_CACHE_DIR/decoded`` (default ``~/.cache/xpnet/decoded``), named by the checksum, and
later processes read that instead, once its bytes match their known CRC-32 (``DECODED_CRC32``;
11 ms for the training images); a copy that does not is decoded again
(``XPNET_CACHE_DIR`` unwritable: nothing is kept).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path

import numpy

from .._cache import cache_root
from .._files import write_atomically

FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
COUNTS = {"train": 60000, "test": 10000}  # what the files above hold
# zlib.crc32 of each file's decoded bytes (what the IDX header describes, as kept): a kept
# copy is read only if its bytes still give this
DECODED_CRC32 = {"train_images": 0xF3639B56, "train_labels": 0xBA07E8EF,
                 "test_images": 0xE4CA5F57, "test_labels": 0xEE8604D9}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def data_dir() -> Path:
    """Where MNIST is kept: ``$XPNET_DATA_DIR/mnist`` or ``~/.cache/xpnet/mnist``."""
    root = os.environ.get("XPNET_DATA_DIR") or "~/.cache/xpnet"
    folder = Path(root).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"MNIST is looked for in {folder}/mnist, but {folder} (XPNET_DATA_DIR, or the "
                                 f"default ~/.cache/xpnet) is a file, not a folder. Set XPNET_DATA_DIR to a folder "
                                 f"whose mnist/ subfolder holds the four MNIST .gz files.")
    return folder / "mnist"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(name: str, dest: Path, sha: str, mirrors) -> None:
    import urllib.request  # only when downloading: it pulls in http and ssl
    errors = []
    dest.parent.mkdir(parents=True, exist_ok=True)
    for mirror in mirrors:
        url = mirror + name
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                while block := response.read(1 << 20):
                    out.write(block)
            if _sha256(Path(tmp)) != sha:
                raise ValueError("checksum mismatch")
            os.replace(tmp, dest)
            return
        except Exception as exc:  # try the next mirror; report them all if none works
            errors.append(f"{url}: {exc}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise FileNotFoundError(
        f"MNIST file {name} is not in {dest.parent} and could not be downloaded "
        f"({'; '.join(errors)}). Copy the four MNIST .gz files there, or set XPNET_DATA_DIR "
        f"to a folder whose mnist/ subfolder holds them.")


def _file(key: str, folder: Path, download: bool, mirrors) -> Path:
    name, sha = FILES[key]
    path = folder / name
    if not path.exists():
        if not download:
            raise FileNotFoundError(f"MNIST file {name} is not in {folder}, and download=False. "
                                    f"Copy it there or set XPNET_DATA_DIR.")
        _download(name, path, sha, mirrors)
    if _checked(path, path.stat().st_size, path.stat().st_mtime_ns) != sha:
        raise ValueError(f"{path} does not match the published SHA-256 of {name} ({sha}); "
                         f"the file is damaged or a different file. Delete it and fetch it again.")
    return path


@functools.lru_cache(maxsize=16)
def _checked(path: Path, size: int, mtime: int) -> str:
    return _sha256(path)


@functools.lru_cache(maxsize=8)
def _parse_idx(path: Path, sha: str, shape: tuple, crc: int) -> numpy.ndarray:
    """An IDX file (checked to have SHA-256 ``sha``) as a read-only uint8 array of ``shape``:
    magic 2051 images (N, 28, 28), 2049 labels (N,). Read from its decoded copy where one is
    kept and it is a uint8 array of that shape whose bytes have CRC-32 ``crc``; anything else
    there is decoded again."""
    kept = _decoded_dir() / f"{path.name.removesuffix('.gz')}.{sha[:32]}.npy"
    data = _kept(kept, shape, crc)
    if data is None:
        data = _decode(path)
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(kept, lambda f: numpy.save(f, data, allow_pickle=False), mode=0o644)
        except OSError:  # a read-only cache: decode every time
            pass
    data.flags.writeable = False
    return data


def _kept(kept: Path, shape: tuple, crc: int):
    """The array kept in ``kept`` if it is uint8 of ``shape`` with CRC-32 ``crc``, else None
    (absent, cut short, not an .npy file, another array, damaged bytes: a cache is never a
    reason for a load to fail, nor a source of data the checked file does not hold)."""
    try:
        data = numpy.load(kept, allow_pickle=False)
    except Exception:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...: whatever a damaged file raises
        return None
    if not isinstance(data, numpy.ndarray) or data.dtype != numpy.uint8 or data.shape != shape:
        return None
    return data if zlib.crc32(numpy.ascontiguousarray(data)) == crc else None


def _decoded_dir() -> Path:
    return Path(cache_root()) / "decoded"


def _decode(path: Path) -> numpy.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {magic}).")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = numpy.frombuffer(raw, dtype=numpy.uint8, offset=4 + 4 * ndim)
    if data.size != numpy.prod(dims):
        raise ValueError(f"{path}: header says {dims}, but {data.size} bytes follow.")
    return data.reshape(dims)


def mnist(normalize: bool = True, flatten: bool = True, one_hot: bool = False, *,
          download: bool = True, mirrors=MIRRORS):
    """``((x_train, t_train), (x_test, t_test))`` as NumPy arrays on the host.

    x: float32 in [0, 1] when ``normalize`` (else uint8 0..255), shape (N, 784) when
    ``flatten`` else (N, 1, 28, 28). t: int64 class indices, or float32 one-hot (N, 10).
    """
    folder = data_dir()
    out = []
    for split in ("train", "test"):
        count = COUNTS[split]
        images, labels = (_parse_idx(_file(key, folder, download, mirrors), FILES[key][1], shape,
                                     DECODED_CRC32[key])
                          for key, shape in ((f"{split}_images", (count, 28, 28)), (f"{split}_labels", (count,))))
        x = images.reshape(len(images), -1) if flatten else images.reshape(len(images), 1, 28, 28)
        # one pass (uint8 -> float32 is exact, then the same division as astype()/255)
        x = numpy.divide(x, numpy.float32(255), dtype=numpy.float32) if normalize else x.copy()
        t = numpy.eye(10, dtype=numpy.float32)[labels] if one_hot else labels.astype(numpy.int64)
        out.append((x, t))
    return tuple(out)
