"""The book's ch. 3 inference: its pre-trained 784-50-100-10 sigmoid network on the MNIST
test set, in batches of 100 (the book reports accuracy 0.9352).

    python examples/book_inference.py sample_weight.pkl [--save weights.npz]

``sample_weight.pkl`` ships with the book's code (ch03/sample_weight.pkl): a pickled dict
of W1, b1, W2, b2, W3, b3. Unpickling runs code from the file, so only open one you trust;
``--save`` converts it once into an xpnet checkpoint, which loads without pickle
(``python examples/book_inference.py weights.npz``).
"""
import argparse
import pickle
import time
from pathlib import Path

import numpy

import xpnet as xn
from xpnet.cli import ArgumentParser, positive_int


def book_network(dtype):
    return xn.nn.Sequential(xn.nn.Affine(784, 50, dtype=dtype), xn.nn.Sigmoid(),
                            xn.nn.Affine(50, 100, dtype=dtype), xn.nn.Sigmoid(),
                            xn.nn.Affine(100, 10, dtype=dtype), xn.nn.Softmax())


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="the book's sample_weight.pkl, or an xpnet .npz made with --save")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--save", default=None, help="write the weights as an xpnet checkpoint")
    args = parser.parse_args()

    device = xn.Device(args.device) if args.device else xn.current_device()
    path = Path(args.weights)
    with xn.use_device(device):
        if path.suffix == ".npz":
            with numpy.load(path, allow_pickle=False) as f:
                dtype = f["param/0.W"].dtype  # float32 or float64, as it was saved
            model = book_network(dtype)
            xn.load(model, path)
        else:
            with open(path, "rb") as f:
                book = pickle.load(f)  # the book's own format; see the warning above
            model = book_network(numpy.asarray(book["W1"]).dtype)
            model.set_params({f"{2 * i}.{name}": numpy.asarray(book[f"{name}{i + 1}"])
                              for i in range(3) for name in ("W", "b")})
    _, (x_test, t_test) = xn.datasets.mnist(normalize=True, flatten=True)
    x_test = x_test.astype(model.params()["0.W"].dtype, copy=False)
    start = time.perf_counter()
    y = xn.to_host(xn.predict(model, x_test, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    accuracy = float((y.argmax(axis=1) == t_test).mean())
    print(f"{device}: accuracy {accuracy:.4f} on {len(x_test)} test images in {seconds * 1000:.0f} ms")
    if args.save:
        print("saved:", xn.save(model, args.save))


if __name__ == "__main__":
    main()
