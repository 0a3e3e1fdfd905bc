"""One makemore training step (exercise 4: embedding, linear, batchnorm with Bessel's correction,
tanh, linear, cross-entropy; hidden 200, batch 32) with the generated forward and backward, against
the same emitted forward differentiated by torch autograd: the two step classes of
``examples/makemore.py``, on the notebook's initialisation and one fixed minibatch."""
from __future__ import annotations

import importlib.util

import torch

from .timing import ROOT, Row, compare


def _example():
    path = ROOT / "examples" / "makemore.py"
    spec = importlib.util.spec_from_file_location("bench_makemore_example", path)
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


def cases(quick: bool, repeat: int) -> list:
    return [("makemore step", lambda: step_rows(200, 32, repeat))]
