"""A trained MNIST CNN handed to a serving stack: exported to ONNX with xn.export_onnx and
run in ONNX Runtime, which must reach the same test accuracy as xpnet itself.

    python examples/mnist_onnx.py                                          # train SimpleConvNet, 1 epoch
    python examples/mnist_onnx.py --checkpoint out/mnist_cnn/model.npz     # one mnist_cnn.py trained
    python examples/mnist_onnx.py --model deep --checkpoint out/mnist_deep_cnn/model.npz

Writes model.onnx to --out. Needs the onnx extra and ONNX Runtime:
pip install 'xpnet[onnx]' onnxruntime. The same conversion on the command line:
xpnet export out/mnist_cnn/model.npz --example mnist_cnn --out model.onnx
"""
import argparse
import runpy
import sys
import time
from pathlib import Path

import numpy

import xpnet as xn
from xpnet.cli import ArgumentParser, nonnegative_int, positive_int

MODELS = runpy.run_path(str(Path(__file__).with_name("mnist_cnn.py")))["MODELS"]


def onnx_runtime_logits(path, x, batch_size=500):
    """The exported graph's outputs for ``x`` (host float32), computed by ONNX Runtime."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return numpy.concatenate([session.run(None, {name: x[i:i + batch_size]})[0]
                              for i in range(0, len(x), batch_size)])


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="simple")
    parser.add_argument("--checkpoint", default=None, help="load this model.npz instead of training")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train and test on the first N images of each set only (a quick run)")
    parser.add_argument("--out", default="out/mnist_onnx")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before training: a bad --out fails now, not after
    try:
        import onnxruntime  # noqa: F401 (checked before training, not after)
    except ImportError:
        sys.exit("mnist_onnx needs ONNX Runtime to run the exported model: pip install onnxruntime")

    device = xn.Device(args.device) if args.device else xn.current_device()
    (x_train, t_train), (x_test, t_test) = xn.datasets.mnist(flatten=False)
    if args.limit:
        x_train, t_train = x_train[:args.limit], t_train[:args.limit]
        x_test, t_test = x_test[:args.limit], t_test[:args.limit]
    xn.seed(args.seed)
    name, build = MODELS[args.model]
    with xn.use_device(device):
        model = build()
    if args.checkpoint:
        xn.load(model, args.checkpoint)
        print(f"{device}: {name} loaded from {args.checkpoint}")
    else:
        start = time.perf_counter()
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.001), (x_train, t_train),
               epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        print(f"{device}: {name} trained for {args.epochs} epochs in {time.perf_counter() - start:.1f} s")

    path = xn.export_onnx(model, out / "model.onnx", x_test[:1])
    print(f"exported: {path} ({path.stat().st_size / 2**20:.1f} MiB)")

    ours = xn.to_host(xn.predict(model, x_test, batch_size=500))
    theirs = onnx_runtime_logits(path, x_test)
    right_ours = int((ours.argmax(axis=1) == t_test).sum())
    right_theirs = int((theirs.argmax(axis=1) == t_test).sum())
    print(f"xpnet test accuracy {right_ours / len(t_test):.4f}; ONNX Runtime test accuracy "
          f"{right_theirs / len(t_test):.4f} ({len(t_test)} images; largest logit difference "
          f"{numpy.abs(ours - theirs).max():.1e})")
    if right_ours != right_theirs:
        sys.exit(f"the exported model classifies {abs(right_ours - right_theirs)} test images differently")


if __name__ == "__main__":
    main()
