"""What the training examples share: names.txt split as makemore's lectures split it, the
generated modules loaded from generated/, and the loss-curve plot. Each example script imports
it from its own folder (``python examples/wavenet.py`` puts examples/ on the path)."""
from __future__ import annotations

import importlib.util
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def load_generated(stem: str, target: str):
    """generated/<stem>_<target>.py, imported from the project's generated/."""
    path = ROOT / "generated" / f"{stem}_{target}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset(block: int, path: Path = ROOT / "data" / "names.txt"):
    """The lectures' data: words shuffled with random.seed(42), split 80/10/10, contexts of
    ``block`` characters; (X, Y) per split as int64 tensors, and the index-to-character map."""
    words = path.read_text().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {ch: position + 1 for position, ch in enumerate(chars)}
    stoi["."] = 0
    itos = {position: ch for ch, position in stoi.items()}

    def build(part):
        xs, ys = [], []
        for word in part:
            context = [0] * block
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


def plot(losses: list[float], path: str, title: str) -> None:
    """The minibatch losses (log10) and their running mean, as a PNG."""
    import matplotlib  # optional heavy dependency, only when a plot is asked for

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
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sample(next_logits, block: int, itos: dict[int, str], seed: int, count: int = 20,
           longest: int = 50) -> list[str]:
    """``count`` names drawn a character at a time from a generator seeded with ``seed``:
    ``next_logits(context)`` gives the logits of the character after a (1, block) context,
    which starts as ``block`` dots; a name ends at a dot (or at ``longest`` characters)."""
    g = torch.Generator().manual_seed(seed)
    names = []
    for _ in range(count):
        context, out = [0] * block, []
        while len(out) < longest:
            probs = F.softmax(next_logits(torch.tensor([context])).reshape(-1), dim=0)
            index = torch.multinomial(probs.float(), 1, generator=g).item()
            context = context[1:] + [index]
            if index == 0:
                break
            out.append(itos[index])
        names.append("".join(out))
    return names


def training_arguments(parser, steps: int, backends: tuple[str, ...]) -> None:
    """The options every training example takes."""
    parser.add_argument("--steps", type=int, default=steps, help=f"steps (default {steps})")
    parser.add_argument("--backend", choices=backends, default=backends[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--check-autograd", action="store_true",
                        help="train an autograd copy side by side; report the largest relative "
                             "difference of the losses")
    parser.add_argument("--plot", metavar="PATH", help="write the loss curve as a PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def train_sgd(step, shadow, data, g, steps: int, batch: int, learning_rate, label: str):
    """SGD on minibatches of ``batch`` rows drawn by ``g``: ``step(X, Y, lr)`` returns the
    minibatch loss, ``shadow`` (or None) an autograd copy's on the same batch. Returns the losses,
    the largest relative difference from the shadow's, the seconds spent in ``step``, and the
    step at which the loss stopped being finite (None when it never did)."""
    from tqdm import tqdm  # optional dependency of the examples, for the progress bar

    X, Y = data
    losses, worst, seconds = [], 0.0, 0.0
    bar = tqdm(range(steps), file=sys.stderr, mininterval=1.0, disable=None, desc=label)
    for position in bar:
        ix = torch.randint(0, len(X), (batch,), generator=g)
        lr = learning_rate(position)
        started = time.perf_counter()
        loss = step(X[ix], Y[ix], lr)
        seconds += time.perf_counter() - started
        losses.append(loss)
        if shadow is not None:
            reference = shadow(X[ix], Y[ix], lr)
            worst = max(worst, abs(loss - reference) / abs(reference))
        if position % 1000 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")
        if not math.isfinite(loss):
            return losses, worst, seconds, position
    return losses, worst, seconds, None
