"""Train makemore part 4's MLP (exercise 4) with the generated backward only: the data set, the
initialisation and the SGD schedule of the notebook (../shared/reference/makemore4.md, sections 1,
2 and 7), each step's gradients from generated/makemore_mlp_layers_{torch,numpy}.py (embedding,
linear, batchnorm with Bessel's correction, tanh, linear, cross-entropy, in their compact forms),
and no autograd anywhere in the loop. Afterwards it calibrates the batchnorm statistics over the
whole training set, reports train and val loss and samples 20 names.

    python examples/makemore.py                        # 200000 steps, hidden 200, torch backend
    python examples/makemore.py --backend numpy --steps 1000 --check-autograd --json

``--backend autograd`` is the baseline: the same emitted forward, differentiated by torch autograd.
The notebook drew bngain and bnbias from torch's unseeded global generator; here it is seeded with
the notebook's seed, so every run is reproducible.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
SEED, SAMPLE_SEED = 2147483647, 2147483647 + 10
BLOCK, EMBED, VOCAB, BATCH, EPS = 3, 10, 27, 32, 1e-5
PARAMETERS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")


def load_generated(target: str):
    """generated/makemore_mlp_layers_<target>.py, imported from the project's generated/."""
    path = ROOT / "generated" / f"makemore_mlp_layers_{target}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset(path: Path = ROOT / "data" / "names.txt"):
    """The notebook's data: shuffled with random.seed(42), split 80/10/10 by words, contexts of
    three characters; (X, Y) per split as int64 tensors, and the index-to-character map."""
    words = path.read_text().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {ch: position + 1 for position, ch in enumerate(chars)}
    stoi["."] = 0
    itos = {position: ch for ch, position in stoi.items()}

    def build(part):
        xs, ys = [], []
        for word in part:
            context = [0] * BLOCK
            for ch in word + ".":
                xs.append(context)
                ys.append(stoi[ch])
                context = context[1:] + [stoi[ch]]
        return torch.tensor(xs), torch.tensor(ys)

    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return {"train": build(words[:n1]), "val": build(words[n1:n2]),
            "test": build(words[n2:])}, itos


def initialise(hidden: int, dtype: torch.dtype):
    """The notebook's initialisation, in its order and scales (section 2), and its generator,
    which then draws the minibatches."""
    g = torch.Generator().manual_seed(SEED)
    fan_in = EMBED * BLOCK
    params = {"C": torch.randn((VOCAB, EMBED), generator=g),
              "W1": torch.randn((fan_in, hidden), generator=g) * (5 / 3) / fan_in**0.5,
              "b1": torch.randn(hidden, generator=g) * 0.1,
              "W2": torch.randn((hidden, VOCAB), generator=g) * 0.1,
              "b2": torch.randn(VOCAB, generator=g) * 0.1}
    torch.manual_seed(SEED)  # the notebook's global generator, seeded here for reproducibility
    params["bngain"] = torch.randn(hidden) * 0.1 + 1.0
    params["bnbias"] = torch.randn(hidden) * 0.1
    return {name: params[name].to(dtype) for name in PARAMETERS}, g


class GeneratedStep:
    """One SGD step with the generated forward and backward of one target."""

    def __init__(self, target: str, params: dict[str, torch.Tensor]):
        self.module = load_generated(target)
        self.numpy = target == "numpy"
        self.params = {k: v.numpy().copy() if self.numpy else v.clone() for k, v in params.items()}

    def __call__(self, Xb, Yb, lr: float) -> float:
        if self.numpy:
            Xb, Yb = Xb.numpy(), Yb.numpy()
        inputs = {"Xb": Xb, "Yb": Yb, **self.params}
        # torch: the forward cut to the loss and the values the backward reads (what the
        # module's autograd Function runs); NumPy modules have only the full forward
        run = getattr(self.module, "lean_forward", self.module.forward)
        values = {**inputs, **run(**inputs)}
        grads = self.module.backward(values, wanted=PARAMETERS)  # the parameters' alone
        for name in PARAMETERS:
            self.params[name] -= lr * grads[name]
        return float(values["loss"])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) if self.numpy else v for k, v in self.params.items()}


class AutogradStep:
    """The baseline: the same emitted torch forward, differentiated by torch autograd."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self.module = load_generated("torch")
        self.params = {k: v.clone().requires_grad_() for k, v in params.items()}

    def __call__(self, Xb, Yb, lr: float) -> float:
        with torch.enable_grad():
            loss = self.module.forward(Xb=Xb, Yb=Yb, **self.params)["loss"]
            grads = torch.autograd.grad(loss, [self.params[n] for n in PARAMETERS])
        with torch.no_grad():
            for name, grad in zip(PARAMETERS, grads):
                self.params[name] -= lr * grad
        return loss.item()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.params.items()}


def make_step(backend: str, params):
    return AutogradStep(params) if backend == "autograd" else GeneratedStep(backend, params)


def calibrate(params, X) -> tuple[torch.Tensor, torch.Tensor]:
    """Batchnorm's mean and unbiased variance over the whole training set (section 7)."""
    hprebn = params["C"][X].reshape(len(X), -1) @ params["W1"] + params["b1"]
    return hprebn.mean(0), hprebn.var(0, unbiased=True)


def logits_of(params, stats, X) -> torch.Tensor:
    mean, var = stats
    hprebn = params["C"][X].reshape(len(X), -1) @ params["W1"] + params["b1"]
    h = torch.tanh(params["bngain"] * (hprebn - mean) * (var + EPS) ** -0.5 + params["bnbias"])
    return h @ params["W2"] + params["b2"]


def sample(params, stats, itos, count: int = 20) -> list[str]:
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    names = []
    for _ in range(count):
        context, out = [0] * BLOCK, []
        while True:
            probs = F.softmax(logits_of(params, stats, torch.tensor([context])), dim=1)
            index = torch.multinomial(probs.float(), 1, generator=g).item()
            context = context[1:] + [index]
            if index == 0:
                break
            out.append(itos[index])
        names.append("".join(out))
    return names


def plot(losses: list[float], path: str, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.log10(np.asarray(losses))
    window = max(1, len(values) // 200)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(values, color="0.8", linewidth=0.5, label="minibatch")
    axes.plot(np.arange(len(smooth)) + window - 1, smooth, color="C0",
              label=f"mean of {window} steps")
    axes.set_xlabel("step")
    axes.set_ylabel("log10 loss")
    axes.set_title(f"makemore MLP, {label}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200000, help="SGD steps (default 200000)")
    parser.add_argument("--hidden", type=int, default=200, help="hidden units (default 200)")
    parser.add_argument("--backend", choices=("torch", "numpy", "autograd"), default="torch")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--check-autograd", action="store_true",
                        help="train an autograd copy side by side; report the largest relative "
                             "difference of the losses")
    parser.add_argument("--plot", metavar="PATH", help="write the loss curve as a PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.hidden < 1:
        parser.error("--steps and --hidden must be positive")
    return args


def main(argv=None) -> int:
    from tqdm import tqdm

    args = arguments(argv)
    torch.set_num_threads(1)  # 32-row batches: threads cost more than they save
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    splits, itos = dataset()
    Xtr, Ytr = splits["train"]
    params, g = initialise(args.hidden, dtype)
    step = make_step(args.backend, params)
    shadow = AutogradStep(params) if args.check_autograd else None
    losses, worst, seconds = [], 0.0, 0.0
    bar = tqdm(range(args.steps), file=sys.stderr, mininterval=1.0, disable=None,
               desc=f"{args.backend} {args.dtype}")
    with torch.no_grad():
        for position in bar:
            ix = torch.randint(0, len(Xtr), (BATCH,), generator=g)
            lr = 0.1 if position < 100000 else 0.01
            started = time.perf_counter()
            loss = step(Xtr[ix], Ytr[ix], lr)
            seconds += time.perf_counter() - started
            losses.append(loss)
            if shadow is not None:
                reference = shadow(Xtr[ix], Ytr[ix], lr)
                worst = max(worst, abs(loss - reference) / abs(reference))
            if position % 1000 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if not math.isfinite(loss):
                print(f"makemore: the loss is {loss} at step {position}", file=sys.stderr)
                return 1
        trained = {k: v.to(torch.float64) if args.dtype == "float64" else v
                   for k, v in step.tensors().items()}
        stats = calibrate(trained, Xtr)
        split_loss = {name: F.cross_entropy(logits_of(trained, stats, X), Y).item()
                      for name, (X, Y) in splits.items() if name in ("train", "val")}
        names = sample(trained, stats, itos)
    if args.plot:
        plot(losses, args.plot, f"{args.backend} backend, hidden {args.hidden}")
    result = {"backend": args.backend, "steps": args.steps, "hidden": args.hidden,
              "train_loss": split_loss["train"], "val_loss": split_loss["val"],
              "seconds_per_step": seconds / args.steps, "samples": names,
              "max_rel_loss_diff_vs_autograd": worst if args.check_autograd else None}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"train {result['train_loss']:.4f}  val {result['val_loss']:.4f}  "
              f"({result['seconds_per_step'] * 1e3:.3f} ms per step, {args.backend})")
        if args.check_autograd:
            print(f"largest relative loss difference vs autograd: {worst:.3e}")
        print("samples: " + ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
