"""Train a small GPT on names.txt, character by character, with the generated backward only:
token and position embeddings, 2 blocks of pre-LayerNorm causal self-attention (4 heads, the
mask written from the indices) and a GELU MLP, each added to the residual stream, a final
LayerNorm and a linear head; cross-entropy at every position of a window of 16 characters;
AdamW. Each step's gradients come from generated/gpt_torch.py (derivations/gpt.py) and feed
torch's AdamW as ``.grad``; no autograd anywhere in the loop.

    python examples/gpt.py                               # 2000 steps, torch backend
    python examples/gpt.py --steps 200 --check-autograd --json

``--backend autograd`` is the twin: the same emitted forward, differentiated by torch autograd;
``--backend functional`` is the same model written with torch.nn.functional (F.layer_norm,
F.scaled_dot_product_attention, F.gelu) under autograd, the model the examples evaluate and
sample with. ``--check-autograd`` trains the twin side by side from the same initialisation on
the same batches and times both steps in the same process, alternating.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import common
import torch
import torch.nn.functional as F

SEED, SAMPLE_SEED = 1337, 1337 + 10
BLOCK, WIDTH, HEADS, HIDDEN, VOCAB, BATCH, BLOCKS, EPS = 16, 64, 4, 256, 27, 32, 2, 1e-5
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.99), 0.01


def parameter_shapes(width: int = WIDTH, heads: int = HEADS, hidden: int = HIDDEN):
    """Every parameter's shape, in the generated module's order of arguments."""
    head = width // heads
    shapes = {"wte": (VOCAB, width), "wpe": (BLOCK, width)}
    for block in range(1, BLOCKS + 1):
        b = f"b{block}_"
        shapes |= {b + "ln1_g": (width,), b + "ln1_b": (width,), b + "ln2_g": (width,),
                   b + "ln2_b": (width,), b + "Wq": (width, heads, head),
                   b + "Wk": (width, heads, head), b + "Wv": (width, heads, head),
                   b + "Wo": (heads, head, width), b + "bo": (width,),
                   b + "W1": (width, hidden), b + "b1": (hidden,), b + "W2": (hidden, width),
                   b + "b2": (width,)}
    return shapes | {"lnf_g": (width,), "lnf_b": (width,), "Wlm": (width, VOCAB),
                     "blm": (VOCAB,)}


def initialise(dtype: torch.dtype):
    """GPT-2's scheme: weights and embeddings normal(0, 0.02), the projections into the residual
    stream scaled by 1/sqrt(2*blocks), biases 0, LayerNorm gains 1; then the same generator
    draws the minibatches."""
    g = torch.Generator().manual_seed(SEED)
    params = {}
    for name, shape in parameter_shapes().items():
        if name.endswith(("_g",)):
            params[name] = torch.ones(shape)
        elif len(shape) == 1:
            params[name] = torch.zeros(shape)
        else:
            scale = 0.02 / (2 * BLOCKS) ** 0.5 if name.endswith(("Wo", "W2")) else 0.02
            params[name] = torch.randn(shape, generator=g) * scale
    return {name: value.to(dtype) for name, value in params.items()}, g


def windows(X: torch.Tensor, Y: torch.Tensor):
    """The next character at every position of each context window: the window shifted by
    one, then the window's own target."""
    return X, torch.cat([X[:, 1:], Y[:, None]], dim=1)


def functional_logits(params, X) -> torch.Tensor:
    """The model written with torch.nn.functional, for evaluation, sampling and the
    ``functional`` backend: (n, T, V) logits."""
    p, positions = params, X.shape[1]
    x = p["wte"][X] + p["wpe"][:positions]
    width = x.shape[-1]
    for block in range(1, BLOCKS + 1):
        b = f"b{block}_"
        h = F.layer_norm(x, (width,), p[b + "ln1_g"], p[b + "ln1_b"], EPS)
        q, k, v = (torch.einsum("itd,dhe->ihte", h, p[b + W]) for W in ("Wq", "Wk", "Wv"))
        O = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + torch.einsum("ihte,hef->itf", O, p[b + "Wo"]) + p[b + "bo"]
        h = F.layer_norm(x, (width,), p[b + "ln2_g"], p[b + "ln2_b"], EPS)
        x = x + F.gelu(h @ p[b + "W1"] + p[b + "b1"]) @ p[b + "W2"] + p[b + "b2"]
    return F.layer_norm(x, (width,), p["lnf_g"], p["lnf_b"], EPS) @ p["Wlm"] + p["blm"]


class Step:
    """One AdamW step (torch.optim.AdamW, weight decay on the matrices only) of one model; what
    differs between the backends is where the gradients come from."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self.params = {k: v.clone() for k, v in params.items()}
        decay = [v for v in self.params.values() if v.dim() >= 2]
        rest = [v for v in self.params.values() if v.dim() < 2]
        self.optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
            lr=LR, betas=BETAS, foreach=True)

    def update(self, grads: dict[str, torch.Tensor]) -> None:
        for name, value in self.params.items():
            value.grad = grads[name]
        self.optimiser.step()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.params.items()}


class GeneratedStep(Step):
    """The generated forward (cut to what the backward reads) and backward."""

    def __init__(self, params):
        super().__init__(params)
        self.module = common.load_generated("gpt", "torch")

    def __call__(self, Xb, Yb) -> float:
        inputs = {"Xb": Xb, "Yb": Yb.reshape(-1), **self.params}
        values = {**inputs, **self.module.lean_forward(**inputs)}
        self.update(self.module.backward(values, wanted=tuple(self.params)))
        return float(values["loss"])


class AutogradStep(Step):
    """The twin: the same emitted torch forward, differentiated by torch autograd."""

    def __init__(self, params):
        super().__init__(params)
        self.module = common.load_generated("gpt", "torch")

    def loss(self, Xb, Yb) -> torch.Tensor:
        return self.module.lean_forward(Xb=Xb, Yb=Yb.reshape(-1), **self.params)["loss"]

    def __call__(self, Xb, Yb) -> float:
        with torch.enable_grad():
            for value in self.params.values():
                value.requires_grad_()
            loss = self.loss(Xb, Yb)
            grads = torch.autograd.grad(loss, list(self.params.values()))
            for value in self.params.values():
                value.requires_grad_(False)
        self.update(dict(zip(self.params, grads)))
        return loss.item()


class FunctionalStep(AutogradStep):
    """The model written with torch.nn.functional, differentiated by torch autograd."""

    def loss(self, Xb, Yb) -> torch.Tensor:
        return F.cross_entropy(functional_logits(self.params, Xb).reshape(-1, VOCAB),
                               Yb.reshape(-1))


STEPS = {"torch": GeneratedStep, "autograd": AutogradStep, "functional": FunctionalStep}


def split_loss(params, X, Y, chunk: int = 4096) -> tuple[float, float]:
    """The mean cross-entropy over every position of every window of a split (the training
    objective, its padding dots included), and at each window's last position alone: the next
    character after 16 of context, the loss makemore's models report."""
    X, Y = windows(X, Y)
    every = last = 0.0
    for start in range(0, len(X), chunk):
        logits = functional_logits(params, X[start:start + chunk])
        labels = Y[start:start + chunk]
        every += F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1),
                                 reduction="sum").item()
        last += F.cross_entropy(logits[:, -1], labels[:, -1], reduction="sum").item()
    return every / Y.numel(), last / len(Y)


def sample(params, itos, count: int = 20) -> list[str]:
    return common.sample(lambda context: functional_logits(params, context)[0, -1], BLOCK, itos,
                         SAMPLE_SEED, count)


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.training_arguments(parser, 2000, tuple(STEPS))
    parser.add_argument("--eval-windows", type=int, metavar="N",
                        help="evaluate the train and val losses on the first N windows of each "
                             "split (default: every window)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_windows is not None and args.eval_windows < 1:
        parser.error("--steps and --eval-windows must be positive")
    return args


def main(argv=None) -> int:
    from tqdm import tqdm  # optional dependency of the examples, for the progress bar

    args = arguments(argv)
    torch.set_num_threads(1)  # the same single thread for every backend, as in bench/
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    splits, itos = common.dataset(BLOCK)
    Xtr, Ytr = splits["train"]
    params, g = initialise(dtype)
    step = STEPS[args.backend](params)
    twin = AutogradStep(params) if args.check_autograd else None
    losses, worst, times, twin_times = [], 0.0, [], []
    bar = tqdm(range(args.steps), file=sys.stderr, mininterval=1.0, disable=None,
               desc=f"gpt {args.backend} {args.dtype}")
    with torch.no_grad():
        for position in bar:
            ix = torch.randint(0, len(Xtr), (BATCH,), generator=g)
            Xb, Yb = windows(Xtr[ix], Ytr[ix])
            started = time.perf_counter()
            loss = step(Xb, Yb)
            times.append(time.perf_counter() - started)
            losses.append(loss)
            if twin is not None:
                started = time.perf_counter()
                reference = twin(Xb, Yb)
                twin_times.append(time.perf_counter() - started)
                worst = max(worst, abs(loss - reference) / abs(reference))
            if position % 100 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if not math.isfinite(loss):
                print(f"gpt: the loss is {loss} at step {position}", file=sys.stderr)
                return 1
        trained = step.tensors()
        result = {name: split_loss(trained, X[:args.eval_windows], Y[:args.eval_windows])
                  for name, (X, Y) in splits.items() if name in ("train", "val")}
        names = sample(trained, itos)
    if args.plot:
        common.plot(losses, args.plot, f"GPT on names, {args.backend} backend")
    skip = min(10, args.steps - 1)  # the first steps warm the allocator up
    result = {"backend": args.backend, "dtype": args.dtype, "steps": args.steps,
              "parameters": sum(v.numel() for v in params.values()),
              "train_loss": result["train"][1], "val_loss": result["val"][1],
              "train_loss_every_position": result["train"][0],
              "val_loss_every_position": result["val"][0],
              "seconds_per_step": statistics.median(times[skip:]), "samples": names,
              "eval_windows": args.eval_windows,
              "max_rel_loss_diff_vs_autograd": worst if twin else None,
              "autograd_seconds_per_step": statistics.median(twin_times[skip:]) if twin else None}
    if twin:
        result["step_time_ratio_vs_autograd"] = statistics.median(
            a / b for a, b in zip(times[skip:], twin_times[skip:]))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"next character: train {result['train_loss']:.4f}  val {result['val_loss']:.4f}; "
              f"every position: train {result['train_loss_every_position']:.4f}  "
              f"val {result['val_loss_every_position']:.4f}")
        print(f"{result['parameters']} parameters, {result['seconds_per_step'] * 1e3:.2f} ms "
              f"per step (median, {args.backend})")
        if twin:
            print(f"largest relative loss difference vs the autograd twin: {worst:.3e}; its step "
                  f"{result['autograd_seconds_per_step'] * 1e3:.2f} ms, ratio "
                  f"{result['step_time_ratio_vs_autograd']:.3f} (paired median)")
        print("samples: " + ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
