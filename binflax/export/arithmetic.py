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
  (:mod:`binflax.native`) is built it replaces that popcount on every XNOR unit, with
  the same packed words and accumulators: the whole fbin networks ran as fast or faster
  with it on their convolutions at batch 1 and faster at batch 8. A fully-connected
  unit differs in its layout (:func:`xnor_layout`): at batch 1 it streams its weights
  once, and the AVX2 path's nibble-split layout holds twice the bytes of XLA's packed
  words (AlexNet fc6 at 0.82x-0.92x XLA's popcount), so where the CPU's path is
  ``avx2`` such a unit's weights are laid out at load for ``avx2_packed`` (the same
  words unsplit, the nibbles split in registers) and its calls run that path. Measured
  native/XLA with the load-time layout (``benchmarks/native_kernel.py --layers
  --laid-isas avx2_packed``, 2-core AMD EPYC Zen 3, AVX2 only, shared machine at a
  1-minute load of 5.2-5.5, two interleaved runs, docs/benchmarks.md, "Fully-connected
  layers on the packed AVX2 layout"), packed then split, batch 1: AlexNet fc6 1.60x /
  1.41x against 0.92x / 0.82x, fc7 1.87x / 1.46x against 1.51x / 1.38x, Sketch-A-Net
  conv6 2.47x / 2.37x against 2.30x / 1.96x, conv7 (0.07 ms) 1.03x / 1.00x against
  1.00x / 0.98x; batch 8: fc6 1.75x / 1.61x, fc7 3.02x / 2.16x, conv6 2.02x / 2.77x,
  conv7 1.58x / 1.70x (split 1.38x / 1.35x, 2.84x / 2.27x, 1.94x / 2.46x, 1.57x /
  1.56x). The AVX-512 layout is unsplit already; the portable path and AVX-512 are not
  measured here.
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
# The most input bits a binary-weight integer unit runs as bit planes (integer_arithmetic):
# a convolution's, and a fully-connected unit's, which streams its weights at batch 1.
MAX_PLANES = 4
MAX_DENSE_PLANES = 8
# The most input bits a packed link's consumer takes (link_pays).
MAX_LINKED_BITS = 2


def link_pays(consumer_bits: int, producer: str, consumer: str) -> bool:
    """Whether a packed link into a consumer of ``consumer_bits`` input bits runs, given
    both layers' computations (both on packed words). A binary consumer's always does; a
    k-bit one's, whose producer packs one word per level boundary (``2**k - 1``), only up
    to :data:`MAX_LINKED_BITS` and on the native kernel. Measured whole networks at
    batch 1, two runs (benchmarks/k_bit_links.py, docs/benchmarks.md "k-bit packed
    links"), unlinked over linked: on the kernel 0.97-1.08x with 2-bit links and
    0.90-0.97x with 4-bit ones; on XLA's popcount 0.88-0.99x and 0.51-0.60x."""
    if consumer_bits == 1:
        return True
    return consumer_bits <= MAX_LINKED_BITS and producer == consumer == "native"


def max_planes(fully_connected: bool) -> int:
    """The most input bits a binary-weight unit runs as bit planes (:func:`integer_arithmetic`)."""
    return MAX_DENSE_PLANES if fully_connected else MAX_PLANES


def choose(backend: str) -> str:
    """The one arithmetic ``"auto"`` runs every XNOR unit with on ``backend`` where it
    cannot mix the native kernel in (:func:`xnor_arithmetic`)."""
    return "popcount" if backend == "cpu" else "int8"


def xnor_arithmetic(backend: str, native: bool) -> str:
    """What ``"auto"`` runs an XNOR unit with: on a CPU with the native kernel (``native``)
    the kernel, convolutions and fully-connected units alike (the latter on their own
    layout, :func:`xnor_layout`), else :func:`choose`'s."""
    if backend == "cpu" and native:
        return "native"
    return choose(backend)


# The native path a fully-connected unit's weights are laid out for, by the CPU's path
# for convolutions: the same words unsplit, half the bytes of the nibble planes.
DENSE_PATHS = {"avx2": "avx2_packed"}


def xnor_layout(fully_connected: bool, path: str) -> str:
    """The native kernel's path a unit's weights are laid out for at load, where calls run
    ``path`` (the CPU's best, :func:`binflax.native.isa`): ``avx2_packed`` for a
    fully-connected unit where that is ``avx2``, else ``path``. Measured (above): faster
    than XLA's popcount at batch 1 and 8 on every fully-connected XNOR layer, and than the
    split layout at batch 1 on each (1.01x-1.74x); at batch 8, where the 8 pixels reuse
    each weight, 0.95x-1.27x the split layout. A call that forces no path runs the one
    its layout names (xnor_kernel.cc)."""
    return DENSE_PATHS.get(path, path) if fully_connected else path


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

    - binary weights and a ``bits``-bit input of at most :func:`max_planes` bits (4 for
      a convolution, 8 for a fully-connected unit) under a packed arithmetic
      (``"popcount"``/``"native"``, or ``"auto"`` on the CPU): one XNOR popcount per bit
      plane of the input, on the same packed kernel, the native call summing them
      (``"auto"`` takes the native kernel where :func:`xnor_arithmetic` would). Measured
      (``benchmarks/bit_planes.py``, batch 1, 2-core AMD EPYC Zen 4, quiet, 2026-12-07;
      docs/benchmarks.md, "Bit planes against the int8 kernel"), 8 planes over the
      native int8 kernel's route below, on every binary-input layer of AlexNet,
      ResNet-18 and Sketch-A-Net: the 4 fully-connected ones 0.17-0.24x on the AVX-512
      path and 0.26-0.39x on the AVX2 one (forced, same CPU), so they take 8 planes;
      the 17 convolutions 0.44-2.06x (geometric mean 0.80x) on AVX-512 but 0.53-1.74x
      (1.10x) on AVX2, so they keep 4 (a rule per CPU path would bake the exporting
      machine's path into a portable file); 4 planes over the int8 route: 0.39x and
      0.52x (geometric means, all 21 layers). A convolution of 5-8 bits takes the
      routes below;
    - ``"int8"``/``"int8_dot"`` or a GPU/TPU: XLA's int8 convolution, ``int32``
      accumulators (``"int8"``);
    - on the CPU where binflax's native int8 kernel runs the layer (8-bit weights, or a
      convolution's 8-bit input on binary weights as +-1 codes;
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
    if binary_weights and bits <= max_planes(fully_connected):
        if arithmetic == "auto":
            return xnor_arithmetic(backend, native=True)
        return arithmetic
    if native_int8 and (
        arithmetic == "native" or (arithmetic == "auto" and (exact_in_float or not fully_connected))
    ):
        return "native_int8"
    return "exact_float" if exact_in_float else "int8"
