"""The TF2 article's MLP trained with xn.value_and_grad instead of backward():
the loss is a plain function of a dict of weights, as with tf.GradientTape.

    python examples/mnist_autodiff.py --epochs 5
"""
import argparse
import time

import numpy

import xpnet as xn
from xpnet import autodiff as ad
from xpnet.cli import ArgumentParser, nonnegative_int, positive_float, positive_int


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=0.1)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    args = parser.parse_args()

    # The article's check values first: d/dx (x^3 + 2x^2 + x) at 3, and the partials of
    # 3 w1^2 + 2 w1 w2 at (5, 3).
    print("grad at 3:", float(xn.to_host(xn.grad(lambda x: x ** 3 + 2 * x ** 2 + x)(3.0))))
    print("partials:", [float(xn.to_host(g)) for g in
                        xn.grad(lambda w1, w2: 3 * w1 ** 2 + 2 * w1 * w2, argnums=(0, 1))(5.0, 3.0)])

    device = xn.Device(args.device) if args.device else xn.current_device()
    (x_train, t_train), (x_test, t_test) = xn.datasets.mnist()
    rng = numpy.random.default_rng(args.seed)
    sizes = [784, 100, 50, 10]
    host = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        host[f"W{i}"] = (rng.standard_normal((n_in, n_out)) * numpy.sqrt(2 / n_in)).astype(numpy.float32)
        host[f"b{i}"] = numpy.zeros(n_out, dtype=numpy.float32)

    def predict(p, x):
        h = ad.relu(x @ p["W0"] + p["b0"])
        h = ad.relu(h @ p["W1"] + p["b1"])
        return h @ p["W2"] + p["b2"]

    def loss(p, x, t):
        return ad.softmax_cross_entropy(predict(p, x), t)

    step = xn.value_and_grad(loss)
    with xn.use_device(device):
        params = xn.to_device(host)
        x, t = xn.to_device((x_train, t_train))
        start = time.perf_counter()
        for _ in range(args.epochs):
            order = xn.to_device(rng.permutation(len(x_train)))
            for lo in range(0, len(x_train), args.batch_size):
                idx = order[lo:lo + args.batch_size]
                _, grads = step(params, x[idx], t[idx])
                for name in params:
                    params[name] -= args.lr * grads[name]
        seconds = time.perf_counter() - start
        logits = predict(params, xn.to_device(x_test))
        accuracy = float(xn.to_host((logits.argmax(axis=1) == xn.to_device(t_test)).mean()))
    print(f"{device}: {args.epochs} epochs in {seconds:.1f} s; test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
