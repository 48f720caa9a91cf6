"""Trees of arrays: nested dicts, lists and tuples (namedtuples too), walked one way.

``to_device``/``to_host`` and ``grad`` take the same trees, so they share this walker:
what one accepts, the other does.
"""
from __future__ import annotations

from collections import defaultdict


def map_tree(fn, tree):
    """The same structure with ``fn`` applied to every leaf (anything not a container).

    A container is rebuilt by its type from the new values: ``type(tree)(pairs)`` for a
    dict (a defaultdict gets its factory first), ``type(tree)(values)`` for a list or tuple,
    fields in order for a namedtuple. A subclass whose constructor takes its values
    otherwise is refused by name (TypeError), rather than rebuilt empty."""
    if isinstance(tree, dict):
        items = [(k, map_tree(fn, v)) for k, v in tree.items()]
        if type(tree) is dict:
            return dict(items)
        new = _rebuilt(tree, lambda: type(tree)(tree.default_factory, items) if isinstance(tree, defaultdict)
                       else type(tree)(items))
        return new if list(new.keys()) == [k for k, _ in items] else _refuse(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple: fields positionally
        return type(tree)(*(map_tree(fn, v) for v in tree))
    if isinstance(tree, (list, tuple)):
        values = [map_tree(fn, v) for v in tree]
        if type(tree) in (list, tuple):
            return type(tree)(values)
        new = _rebuilt(tree, lambda: type(tree)(values))
        return new if len(new) == len(values) else _refuse(tree)
    return fn(tree)


def _rebuilt(tree, build):
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 (whatever its constructor raises: named below)
        _refuse(tree, exc)


def _refuse(tree, cause=None):
    kind = "dict" if isinstance(tree, dict) else "list" if isinstance(tree, list) else "tuple"
    raise TypeError(f"{type(tree).__name__} (a {kind} subclass) cannot be rebuilt from its new values: its "
                    f"constructor does not take them as {kind}() does. Pass a plain {kind} of the arrays "
                    f"({kind}(tree)), or a namedtuple.") from cause


def tree_leaves(tree) -> list:
    """Every leaf of ``tree``, in the order ``map_tree`` visits them (nothing is rebuilt)."""
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in tree_leaves(v)]
    return [tree]
