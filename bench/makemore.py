"""One training step of each model of the makemore series with the generated forward and
backward, against the same emitted forward differentiated by torch autograd: exercise 4's MLP
(embedding, linear, batchnorm with Bessel's correction, tanh, linear, cross-entropy; hidden 200,
batch 32), part 5's WaveNet and the small GPT (also against the GPT written with
torch.nn.functional under autograd): the step classes of ``examples/``, on each example's
initialisation and one fixed minibatch."""
from __future__ import annotations

import importlib.util
import sys

import torch

from .timing import ROOT, Row, compare


def _example(name: str = "makemore"):
    path = ROOT / "examples" / f"{name}.py"
    if str(path.parent) not in sys.path:  # the example imports its neighbour common.py
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_rows(hidden: int, batch: int, repeat: int) -> list[Row]:
    example = _example()
    params, g = example.initialise(hidden, torch.float32)
    Xb = torch.randint(0, example.VOCAB, (batch, example.BLOCK), generator=g)
    Yb = torch.randint(0, example.VOCAB, (batch,), generator=g)
    generated = example.GeneratedStep("torch", params)
    autograd = example.AutogradStep(params)
    lr = 1e-4  # small, so the repeated steps leave the parameters where they started, nearly
    first, reference = generated(Xb, Yb, lr), autograd(Xb, Yb, lr)
    assert abs(first - reference) < 1e-4 * max(1.0, abs(reference)), (first, reference)
    return compare("makemore training step", f"hidden={hidden} batch={batch}", "float32",
                   {"autograd step": lambda: autograd(Xb, Yb, lr)},
                   lambda: generated(Xb, Yb, lr), repeat)


def wavenet_rows(repeat: int) -> list[Row]:
    example = _example("wavenet")
    params, g = example.initialise(torch.float32)
    Xb = torch.randint(0, example.VOCAB, (example.BATCH, example.BLOCK), generator=g)
    Yb = torch.randint(0, example.VOCAB, (example.BATCH,), generator=g)
    generated = example.GeneratedStep("torch", params)
    autograd = example.AutogradStep(params)
    lr = 1e-4
    first, reference = generated(Xb, Yb, lr), autograd(Xb, Yb, lr)
    assert abs(first - reference) < 1e-4 * max(1.0, abs(reference)), (first, reference)
    return compare("wavenet training step", f"block={example.BLOCK} batch={example.BATCH}",
                   "float32", {"autograd step": lambda: autograd(Xb, Yb, lr)},
                   lambda: generated(Xb, Yb, lr), repeat)


def gpt_rows(repeat: int) -> list[Row]:
    example = _example("gpt")
    params, g = example.initialise(torch.float32)
    X = torch.randint(0, example.VOCAB, (example.BATCH, example.BLOCK), generator=g)
    Xb, Yb = example.windows(X, torch.randint(0, example.VOCAB, (example.BATCH,), generator=g))
    generated, autograd = example.GeneratedStep(params), example.AutogradStep(params)
    functional = example.FunctionalStep(params)
    first, reference = generated(Xb, Yb), autograd(Xb, Yb)
    assert abs(first - reference) < 1e-4 * max(1.0, abs(reference)), (first, reference)
    with torch.no_grad():
        return compare("gpt training step (AdamW)",
                       f"T={example.BLOCK} D={example.WIDTH} heads={example.HEADS} "
                       f"batch={example.BATCH}", "float32",
                       {"autograd step": lambda: autograd(Xb, Yb),
                        "torch.nn.functional step": lambda: functional(Xb, Yb)},
                       lambda: generated(Xb, Yb), repeat)


def cases(quick: bool, repeat: int) -> list:
    return [("makemore step", lambda: step_rows(200, 32, repeat)),
            ("wavenet step", lambda: wavenet_rows(repeat)),
            ("gpt step", lambda: gpt_rows(repeat))]
