"""Where xpnet keeps what it can make again (compiled kernels, decoded data sets)."""
from __future__ import annotations

import os


def cache_root() -> str:
    """``$XPNET_CACHE_DIR``, else ``~/.cache/xpnet``: one folder for every cache xpnet keeps."""
    return os.path.expanduser(os.environ.get("XPNET_CACHE_DIR") or os.path.join("~", ".cache", "xpnet"))
