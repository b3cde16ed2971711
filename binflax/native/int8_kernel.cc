// int8 x int8 -> int32 convolution, an XLA FFI custom call on the CPU.
//
// Why: XLA's CPU int8 convolution runs a first layer 6-7x slower than its float32 one
// (docs/benchmarks.md, "Integer layers"), so an exported 8-bit layer gained nothing from
// being integers. This kernel computes binflax.packing.conv_int8's int32 accumulator,
// sum(x * w) over each zero-padded patch, exactly.
//
// Contract: x int8 NHWC, the kernel int8 HWIO (one group) or laid out ahead by
// binflax_layout_int8_kernel; the result int32 (N, H_out, W_out, C_out); strides,
// dilation and the top/left padding as attributes (bottom/right follow from the output
// shape). A pixel's patch is its taps' inputs in (kernel row, column, channel) order, the
// order of the HWIO kernel's reshape to (K, C_out), a tap in the padding reading 0s.
//
// Arithmetic: inputs and weights are sign-extended to int16 once (patches per tile of
// pixels, the weights when laid out) and multiplied in pairs of reduction steps, int16 x
// int16 products summed pairwise into int32 lanes: every product of two int8 values is at
// most 2**14 in magnitude, a pair's sum at most 2**15, so nothing saturates (vpmaddubsw,
// u8 x s8 into int16, would), and the int32 sums wrap as XLA's int32 adds do. A patch of
// odd length gets a 0 pair member. Paths, chosen at run time from the CPU's flags, each
// compiled with its own target attribute (no -march):
// - avx512_vnni: vpdpwssd on zmm, 16 channels per vector, 6 pixels x 4 vectors of
//   accumulators. UNTESTED: written for AVX-512 VNNI CPUs, never run here (docs/native.md).
// - avx_vnni: vpdpwssd (VEX) on ymm, the AVX2 layout. UNTESTED likewise.
// - avx2: vpmaddwd + vpaddd on ymm, 8 channels per vector, 6 pixels x 2 vectors.
// - portable: plain C++, 2 pixels x 8 channels.
// Every path's broadcast operand is one pixel's pair (32 bits), the other a vector of
// channels' pairs: a GEMM micro-kernel over im2col patches.
//
// Threads: XLA's intra-op pool through ParallelFor (parallel.h), as the XNOR kernel.

#if defined(__x86_64__)
#include <immintrin.h>
#define BINFLAX_X86 1
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "ffi_attributes.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using binflax::ParallelFor;

// The paths (binflax.native.INT8_ISAS).
enum Isa : int64_t { kAuto = 0, kPortable = 1, kAvx2 = 2, kAvx512Vnni = 3, kAvxVnni = 4 };

bool Supported(int64_t isa) {
  switch (isa) {
    case kPortable:
      return true;
#ifdef BINFLAX_X86
    case kAvx2:
      return __builtin_cpu_supports("avx2");
    case kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
    case kAvxVnni:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
#endif
    default:
      return false;
  }
}

int64_t Best() {
  for (int64_t isa : {kAvx512Vnni, kAvxVnni, kAvx2}) {
    if (Supported(isa)) return isa;
  }
  return kPortable;
}

// How a path lays out the weights: `lanes` channels per vector, `vectors` vectors per
// group of channels. A group is [pair][vector][lane][2] int16, lanes past C_out 0.
struct Layout {
  int64_t lanes, vectors;
  int64_t group() const { return lanes * vectors; }
};

Layout LayoutOf(int64_t isa) {
  switch (isa) {
    case kAvx512Vnni:
      return {16, 4};
    case kAvx2:
    case kAvxVnni:
      return {8, 2};
    default:
      return {8, 1};
  }
}

int64_t Groups(int64_t channels, const Layout& layout) {
  return (channels + layout.group() - 1) / layout.group();
}

// Vectors in group `group` (the last may have fewer).
int64_t VectorsIn(int64_t channels, const Layout& layout, int64_t group) {
  const int64_t left = channels - group * layout.group();
  return std::min(layout.vectors, (left + layout.lanes - 1) / layout.lanes);
}

// int16 values of one group (every group's stride, the last's too).
int64_t GroupValues(int64_t pairs, const Layout& layout) { return layout.group() * pairs * 2; }

int64_t LaidValues(int64_t isa, int64_t pairs, int64_t channels) {
  const Layout layout = LayoutOf(isa);
  return Groups(channels, layout) * GroupValues(pairs, layout);
}

// Where a call's weights come from: the HWIO kernel as a (K, C_out) int8 matrix, or a
// kernel laid out for another path (read back from its layout). The reduction is laid
// out per kernel row: a row's `run` = kw * cin inputs, padded with a 0 to an even count,
// so that a pixel's pairs inside one kernel row are consecutive inputs of the image (the
// micro-kernels read them in place where the row lies inside it).
struct KernelSource {
  enum Kind { kHwio, kLaid } kind;
  const void* data;
  int64_t rows, run, channels;  // rows: K = kh * run
  Layout laid;

  int64_t row_pairs() const { return (run + 1) / 2; }
  int64_t pairs() const { return rows / run * row_pairs(); }

  // Weight k (HWIO order, unpadded) of output channel j.
  int16_t Value(int64_t k, int64_t j) const {
    if (kind == kHwio) return static_cast<const int8_t*>(data)[k * channels + j];
    const int64_t padded = k / run * 2 * row_pairs() + k % run;
    const int64_t group = j / laid.group(), v = j % laid.group() / laid.lanes;
    const int64_t l = j % laid.lanes;
    const int16_t* src = static_cast<const int16_t*>(data) + group * GroupValues(pairs(), laid);
    return src[((padded / 2 * VectorsIn(channels, laid, group) + v) * laid.lanes + l) * 2 +
               padded % 2];
  }
};

void WriteKernelGroup(const KernelSource& kernel, const Layout& layout, int64_t group,
                      int16_t* out) {
  const int64_t first = group * layout.group();
  const int64_t width = std::min(layout.group(), kernel.channels - first);
  const int64_t vectors = VectorsIn(kernel.channels, layout, group);
  const int64_t row_values = 2 * kernel.row_pairs();
  for (int64_t p = 0; p < kernel.pairs(); ++p)
    for (int64_t j = 0; j < vectors * layout.lanes; ++j)
      for (int64_t h = 0; h < 2; ++h) {
        const int64_t padded = 2 * p + h, t = padded % row_values;
        *out++ = j < width && t < kernel.run
                     ? kernel.Value(padded / row_values * kernel.run + t, first + j)
                     : 0;
      }
}

// What a micro-kernel writes: `width` channels of `rows` consecutive pixels' rows of
// accumulators, `stride` apart.
struct Tile {
  int32_t* out;
  int64_t stride, width;
};

// Where a micro-kernel's pixels read their inputs: pixel r's kernel row i starts at
// base[r] + i * stride[r] (int16 values) and holds row_pairs pairs, in the image itself
// (a row inside it) or in a patch laid out by WritePatch (stride 2 * row_pairs).
struct Sources {
  const int16_t* base[6];
  int64_t stride[6];
  int64_t kh, row_pairs;
};

// A pair of int16 inputs as one 32-bit value (any alignment).
inline int32_t Pair(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Accumulators of pixels [0, kRows) against one group of kVectors vectors of channels.
using Micro = void (*)(const Sources& s, const int16_t* kernel, const Tile& tile);

inline void StorePartial(const int32_t* acc, int64_t n, int32_t* out) {
  for (int64_t l = 0; l < n; ++l) out[l] = acc[l];
}

#ifdef BINFLAX_X86
template <int kRows, int kVectors>
__attribute__((target("avx2"))) void MicroAvx2(const Sources& s, const int16_t* kernel,
                                               const Tile& tile) {
  __m256i acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_setzero_si256();
  for (int64_t i = 0; i < s.kh; ++i) {
   const int16_t* p[kRows];
   for (int r = 0; r < kRows; ++r) p[r] = s.base[r] + i * s.stride[r];
   for (int64_t q = 0; q < s.row_pairs; ++q, kernel += kVectors * 16) {
    const __m256i* w = reinterpret_cast<const __m256i*>(kernel);
    for (int r = 0; r < kRows; ++r) {
      const __m256i x = _mm256_set1_epi32(Pair(p[r] + 2 * q));
      // The weights as memory operands of vpmaddwd: 6 x 2 accumulators, a broadcast and a
      // product fit the 16 registers without spilling.
      for (int v = 0; v < kVectors; ++v) {
        __m256i product;
        __asm__("vpmaddwd %2, %1, %0" : "=x"(product) : "x"(x), "m"(w[v]));
        acc[r][v] = _mm256_add_epi32(acc[r][v], product);
      }
    }
   }
  }
  // Whole vectors stored directly, a partial one through memory (passing the array to a
  // helper made GCC keep every accumulator in memory too).
  for (int r = 0; r < kRows; ++r) {
    int32_t* out = tile.out + r * tile.stride;
    for (int v = 0; v < kVectors; ++v) {
      const int64_t n = std::min<int64_t>(8, tile.width - v * 8);
      if (n == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + v * 8), acc[r][v]);
      } else if (n > 0) {
        int32_t spill[8];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(spill), acc[r][v]);
        StorePartial(spill, n, out + v * 8);
      }
    }
  }
}

// MicroAvx2<6, 2> with its 12 accumulators as named variables: as an array GCC keeps
// them in memory (too large to split into registers) and stores each after its add.
__attribute__((target("avx2"))) void MicroAvx2Six(const Sources& s, const int16_t* kernel,
                                                  const Tile& tile) {
  __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
  __m256i a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  for (int64_t i = 0; i < s.kh; ++i) {
   const int16_t *p0 = s.base[0] + i * s.stride[0], *p1 = s.base[1] + i * s.stride[1];
   const int16_t *p2 = s.base[2] + i * s.stride[2], *p3 = s.base[3] + i * s.stride[3];
   const int16_t *p4 = s.base[4] + i * s.stride[4], *p5 = s.base[5] + i * s.stride[5];
   for (int64_t q = 0; q < s.row_pairs; ++q, kernel += 32) {
    const __m256i* w = reinterpret_cast<const __m256i*>(kernel);
#define BINFLAX_ROW(r)                                                                  \
  {                                                                                     \
    const __m256i x = _mm256_set1_epi32(Pair(p##r + 2 * q));                            \
    __m256i p0, p1;                                                                     \
    __asm__("vpmaddwd %2, %1, %0" : "=x"(p0) : "x"(x), "m"(w[0]));                      \
    __asm__("vpmaddwd %2, %1, %0" : "=x"(p1) : "x"(x), "m"(w[1]));                      \
    a##r##0 = _mm256_add_epi32(a##r##0, p0);                                            \
    a##r##1 = _mm256_add_epi32(a##r##1, p1);                                            \
  }
    BINFLAX_ROW(0) BINFLAX_ROW(1) BINFLAX_ROW(2) BINFLAX_ROW(3) BINFLAX_ROW(4) BINFLAX_ROW(5)
#undef BINFLAX_ROW
   }
  }
  const __m256i acc[6][2] = {{a00, a01}, {a10, a11}, {a20, a21},
                             {a30, a31}, {a40, a41}, {a50, a51}};
  for (int r = 0; r < 6; ++r) {
    int32_t* out = tile.out + r * tile.stride;
    for (int v = 0; v < 2; ++v) {
      const int64_t n = std::min<int64_t>(8, tile.width - v * 8);
      if (n == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + v * 8), acc[r][v]);
      } else if (n > 0) {
        int32_t spill[8];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(spill), acc[r][v]);
        StorePartial(spill, n, out + v * 8);
      }
    }
  }
}

// UNTESTED (this project's CPU has no AVX-VNNI): MicroAvx2 with vpdpwssd's fused add.
template <int kRows, int kVectors>
__attribute__((target("avx2,avxvnni"))) void MicroAvxVnni(const Sources& s,
                                                          const int16_t* kernel,
                                                          const Tile& tile) {
  __m256i acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_setzero_si256();
  for (int64_t i = 0; i < s.kh; ++i) {
    const int16_t* p[kRows];
    for (int r = 0; r < kRows; ++r) p[r] = s.base[r] + i * s.stride[r];
    for (int64_t q = 0; q < s.row_pairs; ++q, kernel += kVectors * 16) {
      __m256i w[kVectors];
      for (int v = 0; v < kVectors; ++v)
        w[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kernel + v * 16));
      for (int r = 0; r < kRows; ++r) {
        const __m256i x = _mm256_set1_epi32(Pair(p[r] + 2 * q));
        for (int v = 0; v < kVectors; ++v)
          acc[r][v] = _mm256_dpwssd_avx_epi32(acc[r][v], x, w[v]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    int32_t* out = tile.out + r * tile.stride;
    for (int v = 0; v < kVectors; ++v) {
      const int64_t n = std::min<int64_t>(8, tile.width - v * 8);
      alignas(32) int32_t spill[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(spill), acc[r][v]);
      if (n > 0) StorePartial(spill, n, out + v * 8);
    }
  }
}

// UNTESTED (this project's CPU has no AVX-512): vpdpwssd on zmm, 16 channels per vector.
template <int kRows, int kVectors>
__attribute__((target("avx512f,avx512vnni"))) void MicroAvx512Vnni(const Sources& s,
                                                                   const int16_t* kernel,
                                                                   const Tile& tile) {
  __m512i acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t i = 0; i < s.kh; ++i) {
    const int16_t* p[kRows];
    for (int r = 0; r < kRows; ++r) p[r] = s.base[r] + i * s.stride[r];
    for (int64_t q = 0; q < s.row_pairs; ++q, kernel += kVectors * 32) {
      __m512i w[kVectors];
      for (int v = 0; v < kVectors; ++v) w[v] = _mm512_loadu_si512(kernel + v * 32);
      for (int r = 0; r < kRows; ++r) {
        const __m512i x = _mm512_set1_epi32(Pair(p[r] + 2 * q));
        for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_dpwssd_epi32(acc[r][v], x, w[v]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    int32_t* out = tile.out + r * tile.stride;
    for (int v = 0; v < kVectors; ++v) {
      const int64_t n = std::min<int64_t>(16, tile.width - v * 16);
      alignas(64) int32_t spill[16];
      _mm512_store_si512(spill, acc[r][v]);
      if (n > 0) StorePartial(spill, n, out + v * 16);
    }
  }
}
#endif  // BINFLAX_X86

template <int kRows>
void MicroPortable(const Sources& s, const int16_t* kernel, const Tile& tile) {
  int32_t acc[kRows][8] = {};
  for (int64_t i = 0; i < s.kh; ++i) {
    for (int64_t q = 0; q < s.row_pairs; ++q, kernel += 16) {
      for (int r = 0; r < kRows; ++r) {
        const int16_t* x = s.base[r] + i * s.stride[r] + 2 * q;
        for (int l = 0; l < 8; ++l)
          acc[r][l] += int32_t{x[0]} * kernel[2 * l] + int32_t{x[1]} * kernel[2 * l + 1];
      }
    }
  }
  for (int r = 0; r < kRows; ++r)
    StorePartial(acc[r], std::min<int64_t>(8, tile.width), tile.out + r * tile.stride);
}

constexpr int kMaxVectors = 4;

// A path's micro-kernels: full[v - 1] runs `rows` pixels against v vectors, single[v - 1]
// one pixel.
struct Path : Layout {
  int64_t rows;
  Micro full[kMaxVectors], single[kMaxVectors];
};

Path PathOf(int64_t isa) {
  switch (isa) {
#ifdef BINFLAX_X86
    case kAvx512Vnni:
      return {LayoutOf(isa),
              6,
              {MicroAvx512Vnni<6, 1>, MicroAvx512Vnni<6, 2>, MicroAvx512Vnni<6, 3>,
               MicroAvx512Vnni<6, 4>},
              {MicroAvx512Vnni<1, 1>, MicroAvx512Vnni<1, 2>, MicroAvx512Vnni<1, 3>,
               MicroAvx512Vnni<1, 4>}};
    case kAvxVnni:
      return {LayoutOf(isa),
              6,
              {MicroAvxVnni<6, 1>, MicroAvxVnni<6, 2>},
              {MicroAvxVnni<1, 1>, MicroAvxVnni<1, 2>}};
    case kAvx2:
      return {LayoutOf(isa), 6, {MicroAvx2<6, 1>, MicroAvx2Six}, {MicroAvx2<1, 1>, MicroAvx2<1, 2>}};
#endif
    default:
      return {LayoutOf(kPortable), 2, {MicroPortable<2>}, {MicroPortable<1>}};
  }
}

struct Geometry {
  int64_t batch, height, width, cin;
  int64_t out_height, out_width, channels;
  int64_t kh, kw, sh, sw, dh, dw, top, left;
  int64_t rows, run, row_pairs, pairs;  // K = kh * run, run = kw * cin, pairs per row, all
};

// Values a run's copy may read past its end and write past it (slack after the input and
// after a tile's patches; what is written past a run is overwritten by what follows it).
constexpr int64_t kSlack = 16;

// n int16 values, in blocks of 16 (fixed-size copies, inlined as vector moves).
inline void CopyRun(int16_t* out, const int16_t* src, int64_t n) {
  for (int64_t c = 0; c < n; c += kSlack) std::memcpy(out + c, src + c, kSlack * sizeof(int16_t));
}

// The patch of output pixel (n, oh, ow) as 2 * pairs int16 values, taps in the padding 0,
// each kernel row's run padded with a 0 to an even count, from the input as int16 (x16,
// sign-extended once per call).
void WritePatch(const Geometry& g, const int16_t* x, int64_t n, int64_t oh, int64_t ow,
                int16_t* out) {
  const int64_t w0 = ow * g.sw - g.left, w_last = w0 + (g.kw - 1) * g.dw;
  const int64_t run = g.run;
  for (int64_t i = 0; i < g.kh; ++i) {
    if (i > 0 && run % 2) *out++ = 0;  // the 0 partner of the last row's odd run
    const int64_t h = oh * g.sh - g.top + i * g.dh;
    if (h < 0 || h >= g.height) {
      std::fill(out, out + run, int16_t{0});
      out += run;
      continue;
    }
    const int16_t* row = x + (n * g.height + h) * g.width * g.cin;
    if (g.dw == 1 && w0 >= 0 && w_last < g.width) {  // one contiguous run of inputs
      CopyRun(out, row + w0 * g.cin, run);
      out += run;
      continue;
    }
    for (int64_t j = 0; j < g.kw; ++j, out += g.cin) {
      const int64_t w = w0 + j * g.dw;
      if (w < 0 || w >= g.width) {
        std::fill(out, out + g.cin, int16_t{0});
      } else {
        std::copy(row + w * g.cin, row + (w + 1) * g.cin, out);
      }
    }
  }
  if (run % 2) *out = 0;
}

// The input as int16, kept between calls: a fresh buffer of this size costs page faults
// on every call. A call takes the largest free buffer (growing it if needed) and gives
// it back; concurrent calls get separate ones.
class Buffer16 {
 public:
  explicit Buffer16(size_t values) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        buffer_ = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (buffer_.size() < values) buffer_.resize(values);
  }
  ~Buffer16() {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(buffer_));
    std::sort(free_.begin(), free_.end(),
              [](const auto& a, const auto& b) { return a.size() < b.size(); });
  }
  int16_t* data() { return buffer_.data(); }

 private:
  static inline std::mutex mutex_;
  static inline std::vector<std::vector<int16_t>> free_;
  std::vector<int16_t> buffer_;
};

// A kernel laid out once, ahead of the calls (binflax_layout_int8_kernel): kLaidHeader
// int64 words - kLaidMagic, kLaidVersion, the path, K, C_out, kw * C_in - then the groups.
constexpr int64_t kLaidHeader = 8;
constexpr uint64_t kLaidMagic = 0x38544e494c46424eULL;  // "NBFLINT8", little-endian
constexpr uint64_t kLaidVersion = 2;  // 2: pairs per kernel row, the run in the header

// Calls that laid out their own weights, for the tests (binflax_int8_call_layouts).
std::atomic<int64_t> call_layouts{0};

struct Kernel {
  KernelSource source;
  const int16_t* laid = nullptr;
  int64_t laid_isa = kAuto;
};

struct Attributes {
  int64_t kh, kw, sh, sw, dh, dw, top, left, isa;
};

ffi::Error Run(ffi::ThreadPool& pool, const ffi::Buffer<ffi::S8>& x, const Kernel& kernel,
               ffi::Result<ffi::Buffer<ffi::S32>>& out, Attributes a) {
  const int64_t isa = a.isa == kAuto ? Best() : a.isa;
  if (!Supported(isa)) return ffi::Error::InvalidArgument("ISA not supported on this CPU");
  const auto xd = x.dimensions(), od = out->dimensions();
  if (xd.size() != 4 || od.size() != 4 || od[0] != xd[0])
    return ffi::Error::InvalidArgument("x must be NHWC, the output (N, H_out, W_out, C_out)");
  if (od[3] != kernel.source.channels)
    return ffi::Error::InvalidArgument("the kernel's output channels differ from the output's");
  Geometry g{xd[0], xd[1], xd[2], xd[3], od[1], od[2], od[3], a.kh,
             a.kw,  a.sh,  a.sw,  a.dh,  a.dw,  a.top, a.left, 0, 0};
  g.run = g.kw * g.cin;
  g.rows = g.kh * g.run;
  g.row_pairs = (g.run + 1) / 2;
  g.pairs = g.kh * g.row_pairs;
  if (kernel.source.rows != g.rows || kernel.source.run != g.run)
    return ffi::Error::InvalidArgument("the kernel's taps and channels do not match the input");
  const Path path = PathOf(isa);
  const int64_t pixels = g.batch * g.out_height * g.out_width, groups = Groups(g.channels, path);
  const int64_t group_values = GroupValues(g.pairs, path);
  const bool prelaid = kernel.laid != nullptr && kernel.laid_isa == isa;
  std::vector<int16_t> own;
  if (!prelaid) {
    call_layouts.fetch_add(1, std::memory_order_relaxed);
    own.resize(groups * group_values);
  }
  const int16_t* laid = prelaid ? kernel.laid : own.data();
  int32_t* acc = out->typed_data();
  const int8_t* x8 = x.typed_data();
  const int64_t values = g.batch * g.height * g.width * g.cin;
  Buffer16 input(values + kSlack);
  int16_t* x16 = input.data();
  std::fill(x16 + values, x16 + values + kSlack, int16_t{0});
  constexpr int64_t kConvertBlock = 1 << 16;
  const int64_t kernel_items = prelaid ? 0 : groups;
  const int64_t layout_items = kernel_items + (values + kConvertBlock - 1) / kConvertBlock;

  // Items: per (block of pixels, run of channel groups), at least kItems of them, pixel
  // blocks first. An item writes the patches of a tile of kTile pixels (int16, into a
  // per-thread buffer), then runs every group of its run over them: the tile's patches
  // stay in L1/L2 while the groups pass, each group's weights are read once per
  // `path.rows` pixels.
  constexpr int64_t kItems = 8, kTile = 48, kBlock = 192;
  int64_t pixel_blocks =
      std::min((pixels + kTile - 1) / kTile, std::max(kItems, (pixels + kBlock - 1) / kBlock));
  // Blocks of whole micro-kernel calls, so that only the last block has a leftover pixel.
  const int64_t block = ((pixels + pixel_blocks - 1) / pixel_blocks + path.rows - 1) /
                        path.rows * path.rows;
  pixel_blocks = (pixels + block - 1) / block;
  const int64_t runs = std::min(groups, (kItems + pixel_blocks - 1) / pixel_blocks);
  const int64_t run = (groups + runs - 1) / runs;
  const int64_t out_pixels = g.out_height * g.out_width;
  const int64_t compute_items = pixel_blocks * runs;

  ParallelFor(pool, {layout_items, layout_items + compute_items}, [&](int64_t item) {
    if (item < kernel_items) {
      WriteKernelGroup(kernel.source, path, item, own.data() + item * group_values);
      return;
    }
    if (item < layout_items) {
      const int64_t first = (item - kernel_items) * kConvertBlock;
      const int64_t last = std::min(values, first + kConvertBlock);
      for (int64_t i = first; i < last; ++i) x16[i] = x8[i];
      return;
    }
    item -= layout_items;
    thread_local std::vector<int16_t> patches;  // 2 * pairs per pixel, and kSlack values
    const size_t tile_values = kTile * 2 * g.pairs + kSlack;
    if (patches.size() < tile_values) patches.resize(tile_values);
    // A pixel whose patch lies inside the image (and dw == 1) is read in place, kernel row
    // by kernel row; the others from a patch laid out in the tile's buffer.
    const int16_t* base[kTile + 6];
    int64_t stride[kTile + 6];
    const int64_t in_place = g.dh * g.width * g.cin, laid_stride = 2 * g.row_pairs;
    const int64_t start = item % pixel_blocks * block, stop = std::min(pixels, start + block);
    const int64_t first_group = item / pixel_blocks * run;
    const int64_t last_group = std::min(groups, first_group + run);
    for (int64_t tile = start; tile < stop; tile += kTile) {
      const int64_t count = std::min(stop, tile + kTile) - tile;
      int64_t n = tile / out_pixels, oh = tile / g.out_width % g.out_height;
      int64_t ow = tile % g.out_width;
      for (int64_t m = 0; m < count; ++m) {
        const int64_t h0 = oh * g.sh - g.top, w0 = ow * g.sw - g.left;
        if (g.dw == 1 && h0 >= 0 && h0 + (g.kh - 1) * g.dh < g.height && w0 >= 0 &&
            w0 + g.kw - 1 < g.width) {
          base[m] = x16 + ((n * g.height + h0) * g.width + w0) * g.cin;
          stride[m] = in_place;
        } else {
          int16_t* patch = patches.data() + m * 2 * g.pairs;
          WritePatch(g, x16, n, oh, ow, patch);
          base[m] = patch;
          stride[m] = laid_stride;
        }
        if (++ow == g.out_width) {
          ow = 0;
          if (++oh == g.out_height) oh = 0, ++n;
        }
      }
      for (int64_t group = first_group; group < last_group; ++group) {
        const int64_t first = group * path.group();
        const int64_t vectors = VectorsIn(g.channels, path, group);
        Tile t{nullptr, g.channels, std::min(path.group(), g.channels - first)};
        const int16_t* w = laid + group * group_values;
        for (int64_t m = 0; m < count;) {
          const int64_t rows = count - m >= path.rows ? path.rows : 1;
          t.out = acc + (tile + m) * g.channels + first;
          Sources sources{{}, {}, g.kh, g.row_pairs};
          for (int64_t r = 0; r < rows; ++r) sources.base[r] = base[m + r];
          for (int64_t r = 0; r < rows; ++r) sources.stride[r] = stride[m + r];
          (rows == path.rows ? path.full : path.single)[vectors - 1](sources, w, t);
          m += rows;
        }
      }
    }
  });
  return ffi::Error::Success();
}

// An exception (a buffer's allocation failing) as an FFI error, not a crash.
template <typename F>
ffi::Error Guarded(F&& run) {
  try {
    return run();
  } catch (const std::exception& error) {
    return ffi::Error::Internal(std::string("binflax int8 kernel: ") + error.what());
  }
}

ffi::Error Int8Conv(ffi::ThreadPool pool, ffi::Buffer<ffi::S8> x, ffi::Buffer<ffi::S8> kernel,
                    ffi::Result<ffi::Buffer<ffi::S32>> out, int64_t kh, int64_t kw, int64_t sh,
                    int64_t sw, int64_t dh, int64_t dw, int64_t top, int64_t left, int64_t isa) {
  const auto kd = kernel.dimensions(), xd = x.dimensions();
  if (kd.size() != 4 || xd.size() != 4 || kd[0] != kh || kd[1] != kw || kd[2] != xd[3])
    return ffi::Error::InvalidArgument("the kernel must be HWIO, I the input's channels");
  Kernel k;
  k.source = {KernelSource::kHwio, kernel.typed_data(), kd[0] * kd[1] * kd[2], kd[1] * kd[2],
              kd[3], {}};
  return Guarded([&] { return Run(pool, x, k, out, {kh, kw, sh, sw, dh, dw, top, left, isa}); });
}

// The laid handler's kernel: binflax_layout_int8_kernel's buffer as uint32 words (JAX
// passes it without jax_enable_x64; XLA aligns buffers to 64 bytes).
ffi::Error Int8ConvLaid(ffi::ThreadPool pool, ffi::Buffer<ffi::S8> x, ffi::Buffer<ffi::U32> laid,
                        ffi::Result<ffi::Buffer<ffi::S32>> out, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top,
                        int64_t left, int64_t isa) {
  const uint64_t* h = reinterpret_cast<const uint64_t*>(laid.typed_data());
  const int64_t size = static_cast<int64_t>(laid.element_count()) / 2;
  if (size < kLaidHeader || h[0] != kLaidMagic || h[1] != kLaidVersion)
    return ffi::Error::InvalidArgument("not a kernel from binflax_layout_int8_kernel (or its version)");
  const int64_t laid_isa = static_cast<int64_t>(h[2]), rows = static_cast<int64_t>(h[3]);
  const int64_t channels = static_cast<int64_t>(h[4]), run = static_cast<int64_t>(h[5]);
  if (laid_isa < kPortable || laid_isa > kAvxVnni || rows < 1 || channels < 1 || run < 1 ||
      rows % run != 0 ||
      kLaidHeader * 4 + LaidValues(laid_isa, rows / run * ((run + 1) / 2), channels) > size * 4)
    return ffi::Error::InvalidArgument("the laid-out int8 kernel's header is damaged");
  Kernel k;
  const int16_t* values = reinterpret_cast<const int16_t*>(h + kLaidHeader);
  k.source = {KernelSource::kLaid, values, rows, run, channels, LayoutOf(laid_isa)};
  k.laid = values;
  k.laid_isa = laid_isa;
  return Guarded([&] { return Run(pool, x, k, out, {kh, kw, sh, sw, dh, dw, top, left, isa}); });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxInt8Conv, Int8Conv,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Ret<ffi::Buffer<ffi::S32>>() BINFLAX_CONV_ATTRIBUTES);

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxInt8ConvLaid, Int8ConvLaid,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>() BINFLAX_CONV_ATTRIBUTES);

// For Python (ctypes): the int8 kernel's best path here and whether a path runs here.
extern "C" int64_t binflax_int8_best_isa() { return Best(); }

extern "C" int64_t binflax_int8_isa_supported(int64_t isa) { return Supported(isa); }

// Calls so far that laid out their own weights (not given them laid out for their path).
extern "C" int64_t binflax_int8_call_layouts() { return call_layouts.load(); }

// uint64 words past the header that a kernel of K = `rows` weights per channel, `run`
// (kw * cin) per kernel row, and `channels` takes laid out for `isa` (any path, on any
// CPU); -1 for an unknown path.
extern "C" int64_t binflax_int8_laid_words(int64_t isa, int64_t rows, int64_t run,
                                           int64_t channels) {
  if (isa < kPortable || isa > kAvxVnni || rows < 1 || run < 1 || rows % run || channels < 1)
    return -1;
  return (LaidValues(isa, rows / run * ((run + 1) / 2), channels) + 3) / 4;
}

// Lays out the (rows, channels) int8 matrix of an HWIO kernel (its reshape to (K, C_out))
// for path `isa` into `out` (`capacity` uint64 words), the header first, zeros after: what
// the laid handler reads as it is when it runs that path. Any path can be laid out on any
// CPU (it is data). 0, or -1 for an unknown path or a buffer too small.
extern "C" int64_t binflax_layout_int8_kernel(int64_t isa, const int8_t* kernel, int64_t rows,
                                              int64_t run, int64_t channels, uint64_t* out,
                                              int64_t capacity) {
  const int64_t needed = binflax_int8_laid_words(isa, rows, run, channels);
  if (needed < 0 || capacity < kLaidHeader + needed) return -1;
  const Layout layout = LayoutOf(isa);
  const KernelSource source{KernelSource::kHwio, kernel, rows, run, channels, {}};
  const int64_t pairs = source.pairs();
  std::fill(out, out + capacity, uint64_t{0});
  const uint64_t header[kLaidHeader] = {kLaidMagic, kLaidVersion, static_cast<uint64_t>(isa),
                                        static_cast<uint64_t>(rows),
                                        static_cast<uint64_t>(channels),
                                        static_cast<uint64_t>(run)};
  std::copy(header, header + kLaidHeader, out);
  int16_t* values = reinterpret_cast<int16_t*>(out + kLaidHeader);
  for (int64_t group = 0; group < Groups(channels, layout); ++group)
    WriteKernelGroup(source, layout, group, values + group * GroupValues(pairs, layout));
  return 0;
}
