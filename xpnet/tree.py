"""Trees of arrays: nested dicts, lists and tuples (namedtuples too), walked one way.

``to_device``/``to_host`` and ``grad`` take the same trees, so they share this walker:
what one accepts, the other does.
"""
from __future__ import annotations

from collections import defaultdict


def map_tree(fn, tree):
    """The same structure with ``fn`` applied to every leaf (anything not a container)."""
    if isinstance(tree, defaultdict):  # its constructor takes the default factory first
        return type(tree)(tree.default_factory, ((k, map_tree(fn, v)) for k, v in tree.items()))
    if isinstance(tree, dict):
        return type(tree)((k, map_tree(fn, v)) for k, v in tree.items())
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple: fields positionally
        return type(tree)(*(map_tree(fn, v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tree(fn, v) for v in tree)
    return fn(tree)


def tree_leaves(tree) -> list:
    """Every leaf of ``tree``, in the order ``map_tree`` visits them."""
    found = []
    map_tree(found.append, tree)
    return found
