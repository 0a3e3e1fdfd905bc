"""symderive's benchmark suite, ``python -m bench [--quick] [--json]``: the emitted code and the
deriver timed against baselines in one process (float32, one thread, interleaved repetitions,
paired medians), one row per (case, shape, baseline) with ``ratio`` = generated / baseline, lower
is better. See ``bench/results.md`` for a full run and how to read it."""
