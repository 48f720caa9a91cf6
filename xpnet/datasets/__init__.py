"""Data: MNIST from its original files, and small synthetic sets. Arrays come back on the host."""
from .memmap import load_memmap, to_memmap
from .mnist import mnist
from .synthetic import exp_regression, spiral, two_moons

__all__ = ["mnist", "exp_regression", "spiral", "two_moons", "to_memmap", "load_memmap"]
