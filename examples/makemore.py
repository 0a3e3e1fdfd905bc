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
import json
import sys

import common
import torch
import torch.nn.functional as F

SEED, SAMPLE_SEED = 2147483647, 2147483647 + 10
BLOCK, EMBED, VOCAB, BATCH, EPS = 3, 10, 27, 32, 1e-5
PARAMETERS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")


def load_generated(target: str):
    return common.load_generated("makemore_mlp_layers", target)


def dataset():
    return common.dataset(BLOCK)


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
    return common.sample(lambda context: logits_of(params, stats, context), BLOCK, itos,
                         SAMPLE_SEED, count)


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=200, help="hidden units (default 200)")
    common.training_arguments(parser, 200000, ("torch", "numpy", "autograd"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.hidden < 1:
        parser.error("--steps and --hidden must be positive")
    return args


def main(argv=None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)  # 32-row batches: threads cost more than they save
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    splits, itos = dataset()
    Xtr, Ytr = splits["train"]
    params, g = initialise(args.hidden, dtype)
    step = make_step(args.backend, params)
    shadow = AutogradStep(params) if args.check_autograd else None
    with torch.no_grad():
        losses, worst, seconds, stopped = common.train_sgd(
            step, shadow, (Xtr, Ytr), g, args.steps, BATCH,
            lambda position: 0.1 if position < 100000 else 0.01,
            f"{args.backend} {args.dtype}")
        if stopped is not None:
            print(f"makemore: the loss is {losses[-1]} at step {stopped}", file=sys.stderr)
            return 1
        trained = {k: v.to(torch.float64) if args.dtype == "float64" else v
                   for k, v in step.tensors().items()}
        stats = calibrate(trained, Xtr)
        split_loss = {name: F.cross_entropy(logits_of(trained, stats, X), Y).item()
                      for name, (X, Y) in splits.items() if name in ("train", "val")}
        names = sample(trained, stats, itos)
    if args.plot:
        common.plot(losses, args.plot,
                    f"makemore MLP, {args.backend} backend, hidden {args.hidden}")
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
