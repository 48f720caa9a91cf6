"""Built-in layers together: every ordered pair of the shape-keeping building blocks (and
of the 4-D ones with the layers that take 4-D to 2-D), a fixed sample of triples, nested
Sequentials, book-style user layers that keep their input or output, and Lambdas (one
returning a view). Each composition is checked for gradients (float64, ``check_gradients``
with garbage-filled gradients and dx required) and for aliasing (property a and b)."""
import itertools
import random

import pytest

import xpnet as xn

from .support import BRIDGES, SHAPE_2D, SHAPE_4D, UNITS_2D, UNITS_4D, BookSigmoid, aliasing_check, host_input


def _chains():
    chains = {}
    for family, units, shape in (("2d", UNITS_2D, SHAPE_2D), ("4d", UNITS_4D, SHAPE_4D)):
        for a, b in itertools.product(units, repeat=2):
            chains[f"{family}:{a}>{b}"] = ([units[a], units[b]], shape)
    for a, b in itertools.product(UNITS_4D, BRIDGES):
        chains[f"4d>2d:{a}>{b}"] = ([UNITS_4D[a], BRIDGES[b]], SHAPE_4D)
    for b in UNITS_2D:  # 4-D, flattened, to 4 features, then each 2-D block
        chains[f"4d>2d:Flatten>Affine>{b}"] = ([BRIDGES["Flatten"], BRIDGES["Affine"], UNITS_2D[b]], SHAPE_4D)
    return chains


def _triples(count=40, seed=0):
    """A fixed sample of ordered triples of each family (all of them would be ~4000)."""
    pick = random.Random(seed)
    chains = {}
    for family, units, shape in (("2d", UNITS_2D, SHAPE_2D), ("4d", UNITS_4D, SHAPE_4D)):
        names = list(units)
        for _ in range(count // 2):
            a, b, c = (pick.choice(names) for _ in range(3))
            chains[f"{family}:{a}>{b}>{c}"] = ([units[a], units[b], units[c]], shape)
    return chains


FUSED_SHAPE = (2, 2, 4, 4)
FUSED = {  # Conv2D [-> ReLU] -> MaxPool2D runs as one stage; then what follows it
    "conv>relu>pool>tanh": ([lambda dt: xn.nn.Conv2D(2, 2, 3, pad=1, dtype=dt, seed=1), lambda dt: xn.nn.ReLU(),
                             lambda dt: xn.nn.MaxPool2D(2), lambda dt: xn.nn.Tanh()], FUSED_SHAPE),
    "conv>pool>relu": ([lambda dt: xn.nn.Conv2D(2, 2, 3, pad=1, dtype=dt, seed=1), lambda dt: xn.nn.MaxPool2D(2),
                        lambda dt: xn.nn.ReLU()], FUSED_SHAPE),
    "pool>relu>sigmoid": ([lambda dt: xn.nn.MaxPool2D(2), lambda dt: xn.nn.ReLU(), lambda dt: xn.nn.Sigmoid()],
                          FUSED_SHAPE),
    "conv>relu>pool>flatten>affine>relu": (
        [lambda dt: xn.nn.Conv2D(2, 2, 3, pad=1, dtype=dt, seed=1), lambda dt: xn.nn.ReLU(),
         lambda dt: xn.nn.MaxPool2D(2), lambda dt: xn.nn.Flatten(), lambda dt: xn.nn.Affine(8, 3, dtype=dt, seed=2),
         lambda dt: xn.nn.ReLU()], FUSED_SHAPE),
    "relu>relu": ([lambda dt: xn.nn.ReLU(), lambda dt: xn.nn.ReLU()], SHAPE_2D),
    "sigmoid>tanh>relu": ([lambda dt: xn.nn.Sigmoid(), lambda dt: xn.nn.Tanh(), lambda dt: xn.nn.ReLU()], SHAPE_2D),
    "affine>booksigmoid>relu>affine": ([lambda dt: xn.nn.Affine(4, 4, dtype=dt, seed=1), lambda dt: BookSigmoid(),
                                        lambda dt: xn.nn.ReLU(), lambda dt: xn.nn.Affine(4, 2, dtype=dt, seed=2)],
                                       SHAPE_2D),
}

PAIRS = _chains()
TRIPLES = _triples()


def _model(makers, dtype="float64"):
    return xn.nn.Sequential(*(make(dtype) for make in makers), input_grad=True)


@pytest.mark.parametrize("chain", list(PAIRS))
def test_pair_gradients(chain, device):
    makers, shape = PAIRS[chain]
    xn.testing.check_gradients(_model(makers), host_input(shape))


@pytest.mark.parametrize("chain", list(PAIRS))
def test_pair_leaves_inputs_and_returned_arrays_alone(chain, device):
    makers, shape = PAIRS[chain]
    aliasing_check(_model(makers), host_input(shape), device)


@pytest.mark.parametrize("chain", list(TRIPLES) + list(FUSED))
def test_triple_gradients(chain, device):
    makers, shape = {**TRIPLES, **FUSED}[chain]
    xn.testing.check_gradients(_model(makers), host_input(shape))


@pytest.mark.parametrize("chain", list(TRIPLES) + list(FUSED))
def test_triple_leaves_inputs_and_returned_arrays_alone(chain, device):
    makers, shape = {**TRIPLES, **FUSED}[chain]
    aliasing_check(_model(makers), host_input(shape), device)


def _nested(dt="float64"):
    inner = xn.nn.Sequential(xn.nn.Affine(4, 4, dtype=dt, seed=1), xn.nn.ReLU())
    deeper = xn.nn.Sequential(xn.nn.Sequential(xn.nn.Tanh(), xn.nn.Affine(4, 3, dtype=dt, seed=2)), xn.nn.Sigmoid())
    return xn.nn.Sequential(inner, deeper, xn.nn.Affine(3, 2, dtype=dt, seed=3), input_grad=True)


def test_nested_sequentials_name_parameters_by_path(device):
    assert sorted(_nested().params()) == ["0.0.W", "0.0.b", "1.0.1.W", "1.0.1.b", "2.W", "2.b"]


def test_nested_sequentials_gradients(device):
    errors = xn.testing.check_gradients(_nested(), host_input(SHAPE_2D))
    assert {"0.0.W", "1.0.1.W", "2.W", "input"} <= set(errors)


def test_nested_sequentials_leave_inputs_and_returned_arrays_alone(device):
    aliasing_check(_nested(), host_input(SHAPE_2D), device)


def test_a_layer_in_two_sequentials_keeps_both_right(device):
    """A layer object may sit in two models (built one after the other); the second
    model's buffer plan must not make the first overwrite its caller's arrays."""
    shared = xn.nn.ReLU()
    first = xn.nn.Sequential(xn.nn.Affine(4, 4, dtype="float64", seed=1), shared,
                             xn.nn.Affine(4, 2, dtype="float64", seed=2), input_grad=True)
    second = xn.nn.Sequential(shared, input_grad=True)  # here the ReLU is first and last
    x = host_input(SHAPE_2D)
    aliasing_check(second, x, device)
    xn.testing.check_gradients(first, x)
    aliasing_check(first, x, device)
    aliasing_check(second, x, device)


@pytest.mark.parametrize("after", ["BookSigmoid", "BookAffine"])
@pytest.mark.parametrize("then", ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax", "Dropout"])
def test_book_style_layer_that_keeps_an_array_then_an_activation(after, then, device):
    """The book's layers keep their output (Sigmoid: self.out) or input (Affine: self.x)
    for backward; an activation writing into its workspace after them must not overwrite it."""
    model = xn.nn.Sequential(xn.nn.Affine(4, 4, dtype="float64", seed=1), UNITS_2D[after]("float64"),
                             UNITS_2D[then]("float64"), xn.nn.Affine(4, 2, dtype="float64", seed=2),
                             input_grad=True)
    xn.testing.check_gradients(model, host_input(SHAPE_2D))
