"""The one set of numba flags every kernel is compiled with (see the package's docstring)."""
JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
