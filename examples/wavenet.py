"""Train makemore part 5's WaveNet with the generated backward only: names.txt split 80/10/10,
contexts of 8 characters, embedding 24, three levels of "flatten two consecutive positions ->
Linear (no bias) -> BatchNorm1d -> tanh" with 128 units, a Linear to the 27 classes whose weights
start scaled by 0.1, SGD with learning rate 0.1 and 0.01 from step 150,000. Each step's gradients
come from generated/wavenet_{torch,numpy}.py (derivations/wavenet.py: the batchnorms over the
batch and position axes, Bessel's correction, as the lecture's fixed BatchNorm1d); the running
statistics (momentum 0.1) are updated from the batch mean and variance the generated forward
returns, and the train and val losses are those of the lecture's eval mode, on the running
statistics. No autograd anywhere in the loop.

    python examples/wavenet.py                           # 200000 steps, torch backend
    python examples/wavenet.py --backend numpy --steps 300 --check-autograd --json

``--backend autograd`` is the baseline: the same emitted forward, differentiated by torch
autograd. The lecture seeded torch's global generator with 42 before building the model and drew
its minibatches from it; here a generator seeded with 42 draws the same numbers in that order.
"""
from __future__ import annotations

import argparse
import json
import sys

import common
import torch
import torch.nn.functional as F

SEED, SAMPLE_SEED = 42, 42 + 10
BLOCK, EMBED, HIDDEN, VOCAB, BATCH, EPS, MOMENTUM = 8, 24, 128, 27, 32, 1e-5, 0.1
LEVELS = 3
PARAMETERS = ("C", "W1", "g1", "beta1", "W2", "g2", "beta2", "W3", "g3", "beta3", "W4", "b4")
# each level's batch mean and (Bessel-corrected) variance, as the generated forward names them
BATCH_STATISTICS = (("bn1_mean", "bn1_var"), ("bn2_mean", "bn2_var"),
                    ("bn3_bnmeani", "bn3_bnvar"))


def initialise(dtype: torch.dtype, embed: int = EMBED, hidden: int = HIDDEN):
    """The lecture's model in its order of construction: Embedding, three Linear layers without
    bias (Kaiming-style 1/sqrt(fan_in)) and batchnorms (gain 1, bias 0), the output Linear (bias
    0) with its weights scaled by 0.1; then the same generator draws the minibatches."""
    g = torch.Generator().manual_seed(SEED)
    params = {"C": torch.randn((VOCAB, embed), generator=g)}
    fan_ins = (2 * embed, 2 * hidden, 2 * hidden)
    for level, fan_in in enumerate(fan_ins, start=1):
        params[f"W{level}"] = torch.randn((fan_in, hidden), generator=g) / fan_in**0.5
        params[f"g{level}"] = torch.ones(hidden)
        params[f"beta{level}"] = torch.zeros(hidden)
    params["W4"] = torch.randn((hidden, VOCAB), generator=g) / hidden**0.5 * 0.1
    params["b4"] = torch.zeros(VOCAB)
    return {name: params[name].to(dtype) for name in PARAMETERS}, g


class Step:
    """One SGD step and the running statistics it keeps, as the lecture's BatchNorm1d does:
    ``running = (1 - momentum)*running + momentum*batch``, the variance the unbiased one."""

    def __init__(self, params: dict[str, torch.Tensor]):
        hidden = params["g1"].shape[0]
        self.running = [[torch.zeros(hidden, dtype=params["g1"].dtype),
                         torch.ones(hidden, dtype=params["g1"].dtype)] for _ in range(LEVELS)]

    def remember(self, values) -> None:
        for running, names in zip(self.running, BATCH_STATISTICS):
            for position, name in enumerate(names):
                batch = torch.as_tensor(values[name]).detach().reshape(-1)
                running[position] = (1 - MOMENTUM) * running[position] + MOMENTUM * batch


class GeneratedStep(Step):
    """The generated forward (every value, the batch statistics among them) and backward of
    one target."""

    def __init__(self, target: str, params: dict[str, torch.Tensor]):
        super().__init__(params)
        self.module = common.load_generated("wavenet", target)
        self.numpy = target == "numpy"
        self.params = {k: v.numpy().copy() if self.numpy else v.clone() for k, v in params.items()}

    def __call__(self, Xb, Yb, lr: float) -> float:
        if self.numpy:
            Xb, Yb = Xb.numpy(), Yb.numpy()
        inputs = {"Xb": Xb, "Yb": Yb, **self.params}
        values = {**inputs, **self.module.forward(**inputs)}
        grads = self.module.backward(values, wanted=PARAMETERS)  # the parameters' alone
        for name in PARAMETERS:
            self.params[name] -= lr * grads[name]
        self.remember(values)
        return float(values["loss"])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) if self.numpy else v for k, v in self.params.items()}


class AutogradStep(Step):
    """The baseline: the same emitted torch forward, differentiated by torch autograd."""

    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__(params)
        self.module = common.load_generated("wavenet", "torch")
        self.params = {k: v.clone().requires_grad_() for k, v in params.items()}

    def __call__(self, Xb, Yb, lr: float) -> float:
        with torch.enable_grad():
            values = self.module.forward(Xb=Xb, Yb=Yb, **self.params)
            grads = torch.autograd.grad(values["loss"], [self.params[n] for n in PARAMETERS])
        with torch.no_grad():
            for name, grad in zip(PARAMETERS, grads):
                self.params[name] -= lr * grad
        self.remember(values)
        return values["loss"].item()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.params.items()}


def make_step(backend: str, params):
    return AutogradStep(params) if backend == "autograd" else GeneratedStep(backend, params)


def logits_of(params, running, X) -> torch.Tensor:
    """The lecture's model in eval mode: each batchnorm on its running statistics; the last
    flatten leaves one position, which is squeezed away."""
    x = params["C"][X]
    for level, (mean, var) in enumerate(running, start=1):
        rows, positions, width = x.shape
        x = x.reshape(rows, positions // 2, 2 * width)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        h = x @ params[f"W{level}"]
        h = params[f"g{level}"] * (h - mean) / torch.sqrt(var + EPS) + params[f"beta{level}"]
        x = torch.tanh(h)
    return x @ params["W4"] + params["b4"]


def sample(params, running, itos, count: int = 20) -> list[str]:
    return common.sample(lambda context: logits_of(params, running, context), BLOCK, itos,
                         SAMPLE_SEED, count)


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.training_arguments(parser, 200000, ("torch", "numpy", "autograd"))
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be positive")
    return args


def main(argv=None) -> int:
    args = arguments(argv)
    torch.set_num_threads(1)  # 32-row batches: threads cost more than they save
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    splits, itos = common.dataset(BLOCK)
    Xtr, Ytr = splits["train"]
    params, g = initialise(dtype)
    step = make_step(args.backend, params)
    shadow = AutogradStep(params) if args.check_autograd else None
    with torch.no_grad():
        losses, worst, seconds, stopped = common.train_sgd(
            step, shadow, (Xtr, Ytr), g, args.steps, BATCH,
            lambda position: 0.1 if position < 150000 else 0.01,
            f"wavenet {args.backend} {args.dtype}")
        if stopped is not None:
            print(f"wavenet: the loss is {losses[-1]} at step {stopped}", file=sys.stderr)
            return 1
        trained, running = step.tensors(), step.running
        split_loss = {name: F.cross_entropy(logits_of(trained, running, X), Y).item()
                      for name, (X, Y) in splits.items() if name in ("train", "val")}
        names = sample(trained, running, itos)
    if args.plot:
        common.plot(losses, args.plot, f"makemore WaveNet, {args.backend} backend")
    result = {"backend": args.backend, "dtype": args.dtype, "steps": args.steps,
              "parameters": sum(v.numel() for v in params.values()),
              "train_loss": split_loss["train"], "val_loss": split_loss["val"],
              "seconds_per_step": seconds / args.steps, "samples": names,
              "max_rel_loss_diff_vs_autograd": worst if args.check_autograd else None}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"train {result['train_loss']:.4f}  val {result['val_loss']:.4f}  "
              f"({result['parameters']} parameters, {result['seconds_per_step'] * 1e3:.3f} ms "
              f"per step, {args.backend})")
        if args.check_autograd:
            print(f"largest relative loss difference vs autograd: {worst:.3e}")
        print("samples: " + ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
