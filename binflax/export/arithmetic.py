"""What each unit computes with: the measured rules behind ``arithmetic="auto"``.

Why rules and not a timing at load: every choice here gives the same result (the same
int32 accumulator for an XNOR unit, the same float sum up to rounding order for a float
one), so it is about speed only, and a timing at load would compile every candidate for
every shape (seconds per model) and, on a shared machine, could pick a slower one from a
noisy sample. The rules below were measured on this project's 2-core AVX2 CPU
(``benchmarks/binary_layers.py``, docs/export.md):

- **XNOR units** (binary input and weights): the XNOR-popcount kernel
  (:func:`binflax.packing.conv_xnor`) was the fastest arithmetic for every XNOR unit of
  AlexNet, ResNet-18 and Sketch-A-Net at batch 1 and 8, faster than the int8
  convolution and the int8 im2col product on every one (several times on most), so the
  CPU rule does not depend on the shape. Where binflax's native kernel
  (:mod:`binflax.native`) is built it replaces that popcount on the CPU's convolutions,
  with the same packed words and accumulators: the whole fbin networks ran as fast or
  faster with it at batch 1 and faster at batch 8. Fully-connected layers stay on XLA's
  popcount. The kernel's weights are now laid out once, at load, so a call no longer
  re-lays the kernel matrix, yet at batch 1 a fully-connected layer only streams its
  weights, and the AVX2 path's nibble-split layout holds twice the bytes of XLA's packed
  words: measured native/XLA with the load-time layout (``benchmarks/native_kernel.py
  --layers``, 2-core AVX2 Zen 3, shared machine, two runs, docs/benchmarks.md)
  AlexNet fc6 0.82x / 0.86x and fc7 1.30x / 0.85x at batch 1 (Sketch-A-Net's conv6
  1.96x / 2.90x, conv7 0.96x / 1.12x), against fc6 1.26x, fc7 2.18x at batch 8. Slower on
  the largest one at batch 1, so the rule is unchanged (per-call layout: fc6 0.15x).
  On GPUs
  and TPUs, whose int8 units and MXUs have no popcount counterpart, the rule picks the
  int8 convolution; that is not measured here (no accelerator was available), and any
  arithmetic can be forced with ``integer_forward(..., arithmetic=...)``.
- **Float-input units**: a fully-connected layer written as a conv (its kernel covers
  the whole unpadded input) runs as a matrix product with the kernel stored (C_out, K),
  faster than the conv. On the CPU a conv with at most :data:`MATMUL_MAX_PIXELS` output
  pixels (batch included) also runs as im2col and that product: XLA's CPU convolution is
  slow on small maps, while with more pixels the convolution is as fast or faster
  (docs/export.md, "Float-input units", has the measured ratios).
"""

from __future__ import annotations

ARITHMETICS = ("auto", "int8", "int8_dot", "popcount", "native")
MATMUL_MAX_PIXELS = 512
# Integers below this sum exactly in float32 (its 24-bit significand).
FLOAT32_EXACT = 2**24
# The most input bits a binary-weight integer unit runs as bit planes (integer_arithmetic).
MAX_PLANES = 4


def choose(backend: str) -> str:
    """The one arithmetic ``"auto"`` runs every XNOR unit with on ``backend`` where it
    cannot mix the native kernel in (:func:`xnor_arithmetic`)."""
    return "popcount" if backend == "cpu" else "int8"


def xnor_arithmetic(fully_connected: bool, backend: str, native: bool) -> str:
    """What ``"auto"`` runs one XNOR unit with: on a CPU with the native kernel (``native``)
    the kernel for every convolution that is not fully connected, else :func:`choose`'s."""
    if backend == "cpu" and native and not fully_connected:
        return "native"
    return choose(backend)


def float_lowering(fully_connected: bool, pixels: int, backend: str) -> str:
    """``"matmul"`` (im2col and a matrix product) or ``"conv"`` for a float-input unit with
    ``pixels`` output pixels (batch included)."""
    small = backend == "cpu" and pixels <= MATMUL_MAX_PIXELS
    return "matmul" if fully_connected or small else "conv"


def integer_arithmetic(
    arithmetic: str,
    bits: int,
    binary_weights: bool,
    exact_in_float: bool,
    fully_connected: bool,
    backend: str,
    *,
    native_int8: bool = False,
) -> str:
    """What an integer unit that is not XNOR runs (a k-bit input on binary weights, or any
    quantized input on 8-bit weights) for the XNOR ``arithmetic`` of its program.

    - binary weights and a ``bits``-bit input of at most :data:`MAX_PLANES` bits under a
      packed arithmetic (``"popcount"``/``"native"``, or ``"auto"`` on the CPU): one XNOR
      popcount per bit plane of the input, on the same packed kernel (``"auto"`` takes
      the native kernel where :func:`xnor_arithmetic` would). An 8-bit input's 8 planes
      ran VGG-Small's conv4 (3x3, 256 -> 256 channels on a 14x14 map) in 6.0 ms against
      2.8 ms for a float input's float32 convolution, its 2-bit input's planes in 0.82 ms
      and its 1-bit one in 0.54 ms (batch 1, this project's 2-core Zen 3 shared with a
      training run, ``binflax.export.latency_table``), so 8 bits take the routes below;
    - ``"int8"``/``"int8_dot"`` or a GPU/TPU: XLA's int8 convolution, ``int32``
      accumulators (``"int8"``);
    - on the CPU where binflax's native int8 kernel runs the layer (8-bit weights, or an
      8-bit input on binary weights as +-1 codes;
      one group, the kernel built; :func:`binflax.native.conv_int8`):
      ``"native_int8"`` in the native programs (``arithmetic="native"``), and under
      ``"auto"`` wherever it was measured faster than what would run instead, which is
      every convolution and every fully-connected layer exact in float32, but not a
      fully-connected layer beyond float32's exact range (over 1032 inputs for 8-bit
      levels), whose alternative is XLA's int8 product: at batch 1 such a layer streams
      its weights, and the kernel's int16 layout holds twice the bytes of XLA's int8.
      Measured (``benchmarks/int8_layers.py``, 2-core AMD EPYC Zen 3, AVX2 only, no
      VNNI, shared machine at a 1-minute load of 6.4-6.6, two interleaved runs,
      2026-12-07; docs/benchmarks.md, "Integer layers"), the kernel over XLA's float32
      convolution (what ``"exact_float"`` runs), batch 1 then 8: AlexNet conv1
      1.70-1.79x / 1.21-1.35x, ResNet-18 conv1 1.19-2.01x / 1.21-1.22x, Sketch-A-Net
      conv1 1.03-1.43x / 1.19-1.80x, 3x3 layers of 64-512 channels on 56x56 to 7x7 maps
      1.48-2.88x / 1.51-2.35x, AlexNet's 5x5 conv2 1.41-1.63x / 1.58-1.70x, fully
      connected 4096 -> 4096 1.99-2.38x / 2.96-3.10x and 512 -> 10 (under 0.1 ms)
      0.93-2.35x / 1.03-1.07x; over XLA's int8 convolution 1.2-10x on every
      convolution, but 0.43-0.45x / 0.54-0.62x on the 4096 -> 4096 fully-connected
      layer (0.88-2.34x / 0.97-1.06x on 512 -> 10).
    - otherwise on the CPU: ``"exact_float"``, the same integer levels and
      codes convolved in float32, exact while every partial sum stays below 2**24
      (``exact_in_float``), else ``"int8"``. Measured on this project's 2-core Zen 3
      (docs/benchmarks.md, "Integer layers"): XLA's CPU int8 convolution ran AlexNet's
      and ResNet-18's first layers 5-9x slower than its float32 one, a 64-channel 3x3
      layer on a 28x28 map as fast or faster.
    """
    if arithmetic in ("int8", "int8_dot") or backend != "cpu":
        return "int8"
    if binary_weights and bits <= MAX_PLANES:
        if arithmetic == "auto":
            return xnor_arithmetic(fully_connected, backend, native=True)
        return arithmetic
    if native_int8 and (
        arithmetic == "native" or (arithmetic == "auto" and (exact_in_float or not fully_connected))
    ):
        return "native_int8"
    return "exact_float" if exact_in_float else "int8"
