"""Trees of arrays: nested dicts, lists and tuples (namedtuples too), walked one way.

``to_device``/``to_host`` and ``grad`` take the same trees, so they share this walker:
what one accepts, the other does.
"""
from __future__ import annotations

import copy


def map_tree(fn, tree):
    """The same structure with ``fn`` applied to every leaf (anything not a container).

    A subclass of dict or list (a defaultdict, a dict of your own whose constructor takes
    other arguments) is copied as it is, its attributes too, and given the new values: its
    constructor is not called."""
    if isinstance(tree, dict):
        if type(tree) is dict:
            return {k: map_tree(fn, v) for k, v in tree.items()}
        new = copy.copy(tree)
        for k, v in tree.items():
            new[k] = map_tree(fn, v)
        return new
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple: fields positionally
        return type(tree)(*(map_tree(fn, v) for v in tree))
    if isinstance(tree, list) and type(tree) is not list:
        new = copy.copy(tree)
        new[:] = [map_tree(fn, v) for v in tree]
        return new
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tree(fn, v) for v in tree)
    return fn(tree)


def tree_leaves(tree) -> list:
    """Every leaf of ``tree``, in the order ``map_tree`` visits them."""
    found = []
    map_tree(found.append, tree)
    return found
