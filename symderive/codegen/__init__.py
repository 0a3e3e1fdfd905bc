"""The third stage: array code. Lowering of index expressions to array operations (``arrays``:
the operations; ``lower``, ``scatter``, ``contraction``, ``convolution``: how statements become
them), the
fewest-pass rewrites (``fuse``, over the extents of ``extents``) and the fused library kernels
(``specialize``; ATen's normalisation kernels in ``normalization``), the NumPy and torch printers (``printing``) and the text of the standalone
modules (``emit``, with the autograd Functions of ``functions``, the input checks of
``input_checks``, the emitted helpers of ``helpers`` and the atomic writes of ``files``). It
imports only the stages below it.
"""
