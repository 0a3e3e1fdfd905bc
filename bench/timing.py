"""How the suite times things: one process, one thread, the generated code and its baseline run
alternately (which goes first alternates too), each sample long enough to read a clock, and the
ratio reported as the median of the per-pair ratios, so drift in a shared machine hits both alike.
``Row`` is one line of ``python -m bench``'s output."""
from __future__ import annotations

import importlib.util
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"


@dataclass(frozen=True)
class Row:
    """One measurement: ``ratio`` is generated time / baseline time, or generated / baseline bytes
    allocated for a memory row (lower is better); ``None`` with ``available`` false when the
    baseline (or the case) cannot run here, ``note`` says why."""

    case: str
    shape: str
    dtype: str
    threads: int
    baseline: str
    ratio: float | None
    generated_s: float | None = None
    baseline_s: float | None = None
    available: bool = True
    note: str = ""
    generated_bytes: int | None = None  # memory rows (bench/memory.py): bytes allocated per call
    baseline_bytes: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def steady_allocator() -> bool:
    """Ask glibc's allocator to keep freed large blocks for reuse instead of returning them to the
    system (``mallopt``: no ``mmap`` per large block, no trimming), as a training loop's allocator
    reaches a steady state, and as jemalloc or tcmalloc behave. Without it, whether a 16 MiB
    result lands on fresh pages (a page fault each 4 KiB, several milliseconds at 4096x1024)
    depends on what the other side of a pair freed last, and a row's time swings by a factor of
    four between runs. The same for the generated code and every baseline; False where the C
    library is not glibc (the rows are then measured with the default allocator)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and \
        bool(libc.mallopt(m_trim_threshold, 1 << 30))


def threads() -> int:
    import torch

    return torch.get_num_threads()


def load_generated(name: str):
    """``generated/<name>.py`` as it is now (other work regenerates it), imported by path."""
    path = GENERATED / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def autograd_function(module):
    """The ``torch.autograd.Function`` subclass a generated torch module defines."""
    import torch

    found = [value for value in vars(module).values() if isinstance(value, type)
             and issubclass(value, torch.autograd.Function) and value is not torch.autograd.Function]
    if not found:
        raise LookupError(f"{module.__name__} defines no torch.autograd.Function")
    return found[0]


def calls_per_sample(function, target_s: float = 2e-3) -> int:
    """How many calls make one sample of about ``target_s`` (tiny kernels take microseconds)."""
    start = time.perf_counter()
    function()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(1000, int(target_s / once)))


def _sample(function, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        function()
    return (time.perf_counter() - start) / number


def paired(generated, baseline, repeat: int) -> tuple[float, float, float]:
    """(median ratio of generated to baseline over interleaved pairs, median generated seconds,
    median baseline seconds) per call."""
    generated(), baseline()  # warm up: first calls allocate and dispatch
    number = min(calls_per_sample(generated), calls_per_sample(baseline))
    ours, theirs, ratios = [], [], []
    for repetition in range(repeat):
        if repetition % 2:
            b = _sample(baseline, number)
            g = _sample(generated, number)
        else:
            g = _sample(generated, number)
            b = _sample(baseline, number)
        ours.append(g)
        theirs.append(b)
        ratios.append(g / b)
    return statistics.median(ratios), statistics.median(ours), statistics.median(theirs)


def compare(case: str, shape: str, dtype: str, baselines: dict, generated, repeat: int) -> list[Row]:
    """One row per baseline: ``baselines`` maps a baseline's name to a callable, or to a string
    saying why it is unavailable here."""
    rows = []
    for name, baseline in baselines.items():
        if isinstance(baseline, str):
            rows.append(Row(case, shape, dtype, threads(), name, None, available=False,
                            note=baseline))
            continue
        ratio, ours, theirs = paired(generated, baseline, repeat)
        rows.append(Row(case, shape, dtype, threads(), name, ratio, ours, theirs))
    return rows


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
