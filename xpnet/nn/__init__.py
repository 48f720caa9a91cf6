"""Layers with explicit forward/backward, book style, on any device."""
from .conv import AvgPool2D, Conv2D, MaxPool2D
from .layer import Layer
from .layers import Affine, BatchNorm, Dropout, Flatten, Lambda, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .losses import MeanSquaredError, SoftmaxCrossEntropy
from .sequential import Sequential

__all__ = [
    "Layer", "Sequential", "Affine", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax",
    "Flatten", "Dropout", "BatchNorm", "Lambda", "Conv2D", "MaxPool2D", "AvgPool2D",
    "SoftmaxCrossEntropy", "MeanSquaredError",
]
