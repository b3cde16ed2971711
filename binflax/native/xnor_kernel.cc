// XNOR + popcount convolution on packed signs, an XLA FFI custom call on the CPU.
//
// Why: XLA lowers binflax.packing.conv_xnor to byte-lookup popcounts that it cannot block
// for registers nor widen lazily; this kernel computes the same int32 accumulator,
// acc = base - 2 * popcount(patch XOR w), with both.
//
// Contract (binflax.packing.conv_xnor's): x is NHW(words), uint32 or uint64 words of 32 or
// 64 packed signs (a uint64 word is two uint32 words, the first in the low half, which on
// a little-endian CPU is the same bytes). A pixel's patch is the uint32 stream of its taps
// (kernel row, column, word), a tap in the spatial padding reading 0 words, padded with a
// 0 word to an even count and read as uint64 pairs; `base` (H_out, W_out, C_out) takes the
// padded taps back. The kernel is the (P, C_out) matrix of binflax.packing.xnor_kernel
// (uint64 pairs) or its uint32 rows.
//
// Four code paths in one object, chosen at run time from the CPU's flags (each compiled
// with its own target attribute, so the object itself needs no -march):
// - avx512: 8 output channels per zmm, vpxorq + vpopcntq + vpaddq, 4 pixels x 32 channels
//   of accumulators in registers.
// - avx2: 4 output channels per ymm, popcount by a 16-entry vpshufb lookup. The nibbles
//   are split once when the operands are laid out (xor commutes with the split), so a
//   256-bit product costs 2 vpxor + 2 vpshufb + 2 vpaddb; counts stay bytes for 31
//   reduction words and are widened by one vpsadbw. 1 pixel x 24 channels of
//   accumulators in registers. Measured faster than a Harley-Seal carry-save tree here
//   (docs/native.md), which needs 4 registers of carries per accumulator.
// - avx2_packed: the avx2 path on the unsplit layout (each reduction word once, half the
//   bytes), the nibbles split in registers after the vpxor (vpand, vpsrlw + vpand, then
//   the same 2 vpshufb + 2 vpaddb): 8 uops per 256 bits instead of 6, for a kernel that
//   is streamed from memory once (a fully-connected layer at batch 1) rather than reused
//   from L1. Never Best(): chosen by laying a kernel out for it (a call of isa auto runs
//   the path its laid-out kernel names, where the CPU has it).
// - portable: __builtin_popcountll on 2 pixels x 4 channels.
//
// A k-bit input (levels 2 i + 1, i of k bits) on the same kernel runs as k sign planes
// stacked on the batch axis, plane j the signs of bit j; the call sums them, weighted 2**j,
// into one accumulator (attribute `bits`; a 1-bit input is one plane), each pixel's planes
// computed together while the kernel group is in L1.
//
// Threads: XLA's intra-op thread pool (ffi::ThreadPool); the calling thread works too,
// and work items are taken from an atomic counter, so the call is correct however many
// pool threads are free.

#if defined(__x86_64__)
#include <immintrin.h>
#define BINFLAX_X86 1
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"
#include "ffi_attributes.h"
#include "parallel.h"

namespace ffi = xla::ffi;

namespace {

enum Isa : int64_t { kAuto = 0, kPortable = 1, kAvx2 = 2, kAvx512 = 3, kAvx2Packed = 4 };
constexpr int64_t kLastIsa = kAvx2Packed;

bool Supported(int64_t isa) {
  switch (isa) {
    case kPortable:
      return true;
#ifdef BINFLAX_X86
    case kAvx2:
    case kAvx2Packed:
      return __builtin_cpu_supports("avx2");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
#endif
    default:
      return false;
  }
}

// The best path for a convolution, which reuses its kernel from L1 (avx2_packed is for
// kernels streamed once, and chosen by the layout, never here).
int64_t Best() {
  for (int64_t isa : {kAvx512, kAvx2}) {
    if (Supported(isa)) return isa;
  }
  return kPortable;
}

// What a micro-kernel writes: for `rows` consecutive pixels, out[row * stride + j] =
// base[row][j] - 2 * popcount for the group's first `width` channels.
struct Tile {
  const int32_t* base[4];
  int32_t* out;
  int64_t stride, width;
};

// Popcounts of `rows` consecutive pixels' patches (each `words` reduction words of
// `planes` uint64 words) against one group of `vectors` vectors of channels, written out
// as accumulators (the epilogue fused: for a short reduction it costs as much as a tenth
// of the arithmetic).
using Micro = void (*)(const uint64_t* patches, const uint64_t* kernel, int64_t words,
                       const Tile& tile);

constexpr int kMaxVectors = 6;

// How a path lays out its operands: `lanes` channels per vector, up to `vectors` vectors
// in a group of channels (a group's kernel stays in L1), `planes` words per reduction word
// (2: the nibble split). Data only, the same on every CPU: a kernel laid out for a path
// can be read back anywhere (binflax_layout_kernel, the laid handlers' fallback).
struct Layout {
  int64_t lanes, vectors, planes;
  constexpr int64_t group() const { return lanes * vectors; }
};

constexpr Layout LayoutOf(int64_t isa) {
  switch (isa) {
    case kAvx512:
      return {8, 4, 1};
    case kAvx2:
      return {4, 6, 2};
    case kAvx2Packed:
      return {4, 6, 1};
    default:
      return {4, 1, 1};
  }
}

// The most channels in a group and pixels in a micro-kernel call, on any path (a call's
// accumulators of one bit plane fit kMaxRows x kMaxGroup).
constexpr int64_t kMaxGroup = 32, kMaxRows = 4;
static_assert(LayoutOf(kAvx512).group() <= kMaxGroup && LayoutOf(kAvx2).group() <= kMaxGroup &&
              LayoutOf(kAvx2Packed).group() <= kMaxGroup && LayoutOf(kPortable).group() <= kMaxGroup);

// Which micro-kernels a path runs on its layout: `rows` pixels per call, full[v - 1] takes
// `rows` pixels and v vectors (the last group may have fewer), single[v - 1] one leftover
// pixel.
struct Path : Layout {
  int64_t rows;
  Micro full[kMaxVectors], single[kMaxVectors];
};

// The accumulators of `lanes` channels from their popcounts, the last vector's lanes past
// `width` left alone.
inline void StorePartial(const uint32_t* counts, int64_t n, const int32_t* base, int32_t* out) {
  for (int64_t l = 0; l < n; ++l) out[l] = base[l] - 2 * static_cast<int32_t>(counts[l]);
}

#ifdef BINFLAX_X86
template <int kRows, int kVectors>
__attribute__((target("avx512f,avx512vpopcntdq"))) void MicroAvx512(const uint64_t* patches,
                                                                    const uint64_t* kernel,
                                                                    int64_t words,
                                                                    const Tile& tile) {
  __m512i acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t k = 0; k < words; ++k) {
    __m512i x[kRows];
    for (int r = 0; r < kRows; ++r) x[r] = _mm512_set1_epi64(patches[r * words + k]);
    for (int v = 0; v < kVectors; ++v) {
      const __m512i w = _mm512_loadu_si512(kernel + (k * kVectors + v) * 8);
      for (int r = 0; r < kRows; ++r)
        acc[r][v] = _mm512_add_epi64(acc[r][v], _mm512_popcnt_epi64(_mm512_xor_si512(x[r], w)));
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) {
      const int64_t n = std::min<int64_t>(8, tile.width - v * 8);
      const __m256i counts = _mm512_cvtepi64_epi32(acc[r][v]);
      const int32_t* base = tile.base[r] + v * 8;
      int32_t* out = tile.out + r * tile.stride + v * 8;
      if (n == 8) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                            _mm256_sub_epi32(b, _mm256_add_epi32(counts, counts)));
      } else if (n > 0) {
        alignas(32) uint32_t spill[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(spill), counts);
        StorePartial(spill, n, base, out);
      }
    }
  }
}

// The byte counts of reduction words [start, stop) (at most 31: 8 set bits per byte and
// word keep a count under 256) into acc, for kRows pixels and kVectors vectors, on the
// split layout (kPlanes 2: operands already split into nibbles) or the packed one
// (kPlanes 1: the XOR split in registers).
template <int kPlanes, int kRows, int kVectors>
__attribute__((target("avx2"), always_inline)) inline void ByteCountsAvx2(
    const uint64_t* patches, const uint64_t* kernel, int64_t words, int64_t start, int64_t stop,
    __m256i (&acc)[kRows][kVectors]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                       1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_setzero_si256();
  if constexpr (kPlanes == 2) {
    for (int64_t k = start; k < stop; ++k) {
      __m256i low[kRows], high[kRows];
      for (int r = 0; r < kRows; ++r) {
        low[r] = _mm256_set1_epi64x(patches[(r * words + k) * 2]);
        high[r] = _mm256_set1_epi64x(patches[(r * words + k) * 2 + 1]);
      }
      const uint64_t* w = kernel + k * kVectors * 8;
      for (int v = 0; v < kVectors; ++v) {
        const __m256i w_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + v * 8));
        const __m256i w_high =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + v * 8 + 4));
        for (int r = 0; r < kRows; ++r) {
          acc[r][v] = _mm256_add_epi8(acc[r][v],
                                      _mm256_shuffle_epi8(lut, _mm256_xor_si256(low[r], w_low)));
          acc[r][v] = _mm256_add_epi8(
              acc[r][v], _mm256_shuffle_epi8(lut, _mm256_xor_si256(high[r], w_high)));
        }
      }
    }
  } else {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    for (int64_t k = start; k < stop; ++k) {
      __m256i x[kRows];
      for (int r = 0; r < kRows; ++r) x[r] = _mm256_set1_epi64x(patches[r * words + k]);
      const uint64_t* w = kernel + k * kVectors * 4;
      for (int v = 0; v < kVectors; ++v) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + v * 4));
        for (int r = 0; r < kRows; ++r) {
          const __m256i t = _mm256_xor_si256(x[r], wv);
          const __m256i low = _mm256_and_si256(t, nibble);
          const __m256i high = _mm256_and_si256(_mm256_srli_epi16(t, 4), nibble);
          acc[r][v] = _mm256_add_epi8(acc[r][v], _mm256_shuffle_epi8(lut, low));
          acc[r][v] = _mm256_add_epi8(acc[r][v], _mm256_shuffle_epi8(lut, high));
        }
      }
    }
  }
}

// base - 2 * total for one pixel's kVectors vectors of 64-bit totals, 8 channels per store.
template <int kVectors>
__attribute__((target("avx2"), always_inline)) inline void StoreAvx2(
    const __m256i (&total)[kVectors], const int32_t* base, int32_t* out, int64_t width) {
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int v = 0; v < kVectors; v += 2) {
    // Two vectors' counts (each under 2^32) as 8 int32: the second's in the high halves.
    const __m256i odd = v + 1 < kVectors ? _mm256_slli_epi64(total[v + 1], 32) : total[v];
    const __m256i counts =
        _mm256_permutevar8x32_epi32(_mm256_blend_epi32(total[v], odd, 0b10101010), order);
    const int64_t n = std::min<int64_t>(v + 1 < kVectors ? 8 : 4, width - v * 4);
    if (n == 8) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + v * 4));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + v * 4),
                          _mm256_sub_epi32(b, _mm256_add_epi32(counts, counts)));
    } else if (n > 0) {
      alignas(32) uint32_t spill[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(spill), counts);
      StorePartial(spill, n, base + v * 4, out + v * 4);
    }
  }
}

template <int kPlanes, int kRows, int kVectors>
__attribute__((target("avx2"))) void MicroAvx2(const uint64_t* patches, const uint64_t* kernel,
                                               int64_t words, const Tile& tile) {
  constexpr int64_t kByteRun = 31;
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[kRows][kVectors], total[kRows][kVectors];
  ByteCountsAvx2<kPlanes>(patches, kernel, words, 0, std::min(words, kByteRun), acc);
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) total[r][v] = _mm256_sad_epu8(acc[r][v], zero);
  // Longer reductions widen every 31 words (a short one keeps no totals live in the loop).
  for (int64_t start = kByteRun; start < words; start += kByteRun) {
    ByteCountsAvx2<kPlanes>(patches, kernel, words, start, std::min(words, start + kByteRun),
                            acc);
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < kVectors; ++v)
        total[r][v] = _mm256_add_epi64(total[r][v], _mm256_sad_epu8(acc[r][v], zero));
  }
  for (int r = 0; r < kRows; ++r)
    StoreAvx2(total[r], tile.base[r], tile.out + r * tile.stride, tile.width);
}

#endif  // BINFLAX_X86

template <int kRows>
void MicroPortable(const uint64_t* patches, const uint64_t* kernel, int64_t words,
                   const Tile& tile) {
  uint32_t acc[kRows][4] = {};
  for (int64_t k = 0; k < words; ++k) {
    for (int r = 0; r < kRows; ++r) {
      const uint64_t x = patches[r * words + k];
      for (int l = 0; l < 4; ++l) acc[r][l] += __builtin_popcountll(x ^ kernel[k * 4 + l]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    StorePartial(acc[r], std::min<int64_t>(4, tile.width), tile.base[r],
                 tile.out + r * tile.stride);
}

#ifdef BINFLAX_X86
// Both AVX2 layouts (kPlanes 2: the nibble split; 1: packed) run 1 pixel per call, so the
// leftover-pixel kernels are the full ones.
template <int kPlanes>
Path Avx2Path(int64_t isa) {
  return {LayoutOf(isa),
          1,
          {MicroAvx2<kPlanes, 1, 1>, MicroAvx2<kPlanes, 1, 2>, MicroAvx2<kPlanes, 1, 3>,
           MicroAvx2<kPlanes, 1, 4>, MicroAvx2<kPlanes, 1, 5>, MicroAvx2<kPlanes, 1, 6>},
          {MicroAvx2<kPlanes, 1, 1>, MicroAvx2<kPlanes, 1, 2>, MicroAvx2<kPlanes, 1, 3>,
           MicroAvx2<kPlanes, 1, 4>, MicroAvx2<kPlanes, 1, 5>, MicroAvx2<kPlanes, 1, 6>}};
}
#endif

// Register blocks (at most kMaxRows pixels), measured on a Zen 3 (docs/native.md): AVX2 1
// pixel x 6 vectors (6 byte accumulators, 2 broadcasts and 2 kernel vectors live; 2 pixels
// x 3 and 2 x 4 spill or load more); AVX-512 4 pixels x 4 vectors (16 of 32 registers,
// each kernel vector loaded once per 4 pixels).
Path PathOf(int64_t isa) {
  switch (isa) {
#ifdef BINFLAX_X86
    case kAvx512:
      return {LayoutOf(kAvx512),
              4,
              {MicroAvx512<4, 1>, MicroAvx512<4, 2>, MicroAvx512<4, 3>, MicroAvx512<4, 4>},
              {MicroAvx512<1, 1>, MicroAvx512<1, 2>, MicroAvx512<1, 3>, MicroAvx512<1, 4>}};
    case kAvx2:
      return Avx2Path<2>(kAvx2);
    case kAvx2Packed:
      return Avx2Path<1>(kAvx2Packed);
#endif
    default:
      return {LayoutOf(kPortable), 2, {MicroPortable<2>}, {MicroPortable<1>}};
  }
}

// ParallelFor: the calling thread and the pool's, phases of work items (parallel.h).
using binflax::ParallelFor;

// The next layer's packed signs from one pixel's accumulators, as
// binflax.export.chain.threshold_words: bit c of the uint32 stream is sense[c] * acc[c] <
// limit[c] (int32, wrapping as XLA's multiply does), bits past C_out and whole words past
// them 0.
using Pack = void (*)(const int32_t* acc, const int32_t* sense, const int32_t* limit,
                      int64_t channels, int64_t words32, uint32_t* out);

void PackPortable(const int32_t* acc, const int32_t* sense, const int32_t* limit, int64_t channels,
                  int64_t words32, uint32_t* out) {
  for (int64_t w = 0; w < words32; ++w) {
    uint32_t bits = 0;
    for (int64_t c = w * 32; c < std::min(channels, w * 32 + 32); ++c) {
      const int32_t product =
          static_cast<int32_t>(static_cast<uint32_t>(sense[c]) * static_cast<uint32_t>(acc[c]));
      bits |= static_cast<uint32_t>(product < limit[c]) << (c % 32);
    }
    out[w] = bits;
  }
}

#ifdef BINFLAX_X86
__attribute__((target("avx2"))) void PackAvx2(const int32_t* acc, const int32_t* sense,
                                              const int32_t* limit, int64_t channels,
                                              int64_t words32, uint32_t* out) {
  const int64_t full = channels / 8 * 8;  // channels in whole vectors of 8
  for (int64_t w = 0; w < words32; ++w) {
    uint32_t bits = 0;
    for (int64_t c = w * 32; c < std::min(full, w * 32 + 32); c += 8) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c));
      const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sense + c));
      const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(limit + c));
      const __m256i below = _mm256_cmpgt_epi32(l, _mm256_mullo_epi32(s, a));
      bits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(below))) << (c % 32);
    }
    out[w] = bits;
  }
  if (full < channels) {  // the last channels, into the word that holds them
    uint32_t tail;
    const int64_t w = full / 32;
    PackPortable(acc + w * 32, sense + w * 32, limit + w * 32, channels - w * 32, 1, &tail);
    out[w] = tail;
  }
}
#endif

struct Geometry {
  int64_t batch, height, width, words32;  // input, words32 uint32 words per pixel
  int64_t out_height, out_width, channels;
  int64_t kh, kw, sh, sw, dh, dw, top, left;
  int64_t words;  // uint64 reduction words per patch
  int64_t pixels() const { return batch * out_height * out_width; }
};

// A reduction word as the path lays it out: itself, or (planes == 2) its low and high
// nibbles.
inline uint64_t* PutWord(uint64_t word, int64_t planes, uint64_t* out) {
  if (planes == 1) {
    *out = word;
    return out + 1;
  }
  out[0] = word & 0x0F0F0F0F0F0F0F0FULL;
  out[1] = (word >> 4) & 0x0F0F0F0F0F0F0F0FULL;
  return out + 2;
}

// The patch of output pixel (n, oh, ow) as `words` reduction words of `planes` uint64
// words each. When a pixel holds whole uint64 words each tap's words are copied as they
// are; otherwise the taps' uint32 words are gathered into `stream` first and paired
// across taps.
void WritePatch(const Geometry& g, const uint32_t* x, int64_t n, int64_t oh, int64_t ow,
                int64_t planes, uint32_t* stream, uint64_t* out) {
  const bool whole = g.words32 % 2 == 0;
  uint32_t* dst = stream;
  const int64_t w0 = ow * g.sw - g.left, w_last = w0 + (g.kw - 1) * g.dw;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t h = oh * g.sh - g.top + i * g.dh;
    const bool row_inside = h >= 0 && h < g.height;
    const uint32_t* row = row_inside ? x + (n * g.height + h) * g.width * g.words32 : nullptr;
    if (whole && g.dw == 1 && row_inside && w0 >= 0 && w_last < g.width) {
      // The kernel row lies inside the image: its taps are one contiguous run of words.
      for (int64_t c = w0 * g.words32; c < (w_last + 1) * g.words32; c += 2) {
        uint64_t word;
        std::memcpy(&word, row + c, sizeof(word));
        out = PutWord(word, planes, out);
      }
      continue;
    }
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t w = w0 + j * g.dw;
      const bool inside = row_inside && w >= 0 && w < g.width;
      const uint32_t* src = inside ? row + w * g.words32 : nullptr;
      if (whole) {
        for (int64_t c = 0; c < g.words32; c += 2) {
          uint64_t word = 0;
          if (inside) std::memcpy(&word, src + c, sizeof(word));
          out = PutWord(word, planes, out);
        }
      } else {
        for (int64_t c = 0; c < g.words32; ++c) dst[c] = inside ? src[c] : 0;
        dst += g.words32;
      }
    }
  }
  if (whole) return;
  dst[0] = 0;  // the pad word of an odd count
  for (int64_t k = 0; k < g.words; ++k)
    out = PutWord(uint64_t{stream[2 * k]} | (uint64_t{stream[2 * k + 1]} << 32), planes, out);
}

// Channels of group `group` (`vectors` vectors), the last group's possibly fewer.
int64_t VectorsIn(int64_t channels, const Layout& layout, int64_t group) {
  const int64_t left = channels - group * layout.group();
  return std::min(layout.vectors, (left + layout.lanes - 1) / layout.lanes);
}

int64_t Groups(int64_t channels, const Layout& layout) {
  return (channels + layout.group() - 1) / layout.group();
}

// Words of one laid-out kernel group (the last one's stride too, whatever it holds).
int64_t GroupWords(int64_t words, const Layout& layout) {
  return layout.group() * words * layout.planes;
}

// Where the kernel's words come from when a call lays it out: the (P, C_out) matrix of
// uint64 words or of uint32 rows (`rows32` of them), or a kernel laid out for another
// path (`laid`, as binflax_layout_kernel writes it, past the header).
struct KernelSource {
  enum Kind { kWords64, kWords32, kLaid } kind;
  const void* data;
  int64_t rows32, words, channels;
  Layout laid;

  // Reduction word k of output channel j.
  uint64_t Word(int64_t k, int64_t j) const {
    if (kind == kWords64) return static_cast<const uint64_t*>(data)[k * channels + j];
    if (kind == kWords32) {
      const uint32_t* k32 = static_cast<const uint32_t*>(data);
      uint64_t word = k32[2 * k * channels + j];
      if (2 * k + 1 < rows32) word |= uint64_t{k32[(2 * k + 1) * channels + j]} << 32;
      return word;
    }
    const int64_t group = j / laid.group(), v = j % laid.group() / laid.lanes;
    const int64_t l = j % laid.lanes;
    const uint64_t* src = static_cast<const uint64_t*>(data) + group * GroupWords(words, laid) +
                          (k * VectorsIn(channels, laid, group) + v) * laid.planes * laid.lanes + l;
    return laid.planes == 2 ? src[0] | (src[laid.lanes] << 4) : src[0];
  }
};

// Kernel group `group` as [word][vector][plane][lane]; lanes past C_out are 0 and their
// counts are never written out.
void WriteKernelGroup(const KernelSource& kernel, const Layout& layout, int64_t group,
                      uint64_t* out) {
  const int64_t c = kernel.channels, first = group * layout.group();
  const int64_t width = std::min(layout.group(), c - first);
  const int64_t vectors = VectorsIn(c, layout, group);
  uint64_t* dst = out;
  for (int64_t k = 0; k < kernel.words; ++k) {
    for (int64_t j0 = 0; j0 < vectors * layout.lanes;
         j0 += layout.lanes, dst += layout.planes * layout.lanes) {
      for (int64_t l = 0; l < layout.lanes; ++l) {
        const uint64_t word = j0 + l < width ? kernel.Word(k, first + j0 + l) : 0;
        if (layout.planes == 2) {
          dst[l] = word & 0x0F0F0F0F0F0F0F0FULL;
          dst[layout.lanes + l] = (word >> 4) & 0x0F0F0F0F0F0F0F0FULL;
        } else {
          dst[l] = word;
        }
      }
    }
  }
}

// A kernel laid out once, ahead of the calls (binflax_layout_kernel): a header of
// kLaidHeader uint64 words - kLaidMagic, kLaidVersion, the path (enum Isa) it was laid
// out for, the reduction words and the output channels - then the groups as
// WriteKernelGroup writes them, zeros after.
constexpr int64_t kLaidHeader = 8;
constexpr uint64_t kLaidMagic = 0x4c58414c46424e42ULL;  // "BNBFLAXL", little-endian
constexpr uint64_t kLaidVersion = 1;

// Calls that laid their kernel out themselves (not given it laid out for their path), for
// the tests (binflax_call_layouts).
std::atomic<int64_t> call_layouts{0};

// Words past the header a kernel of `words` reduction words and `channels` output
// channels takes laid out for `isa`.
int64_t LaidWords(int64_t isa, int64_t words, int64_t channels) {
  const Layout layout = LayoutOf(isa);
  return Groups(channels, layout) * GroupWords(words, layout);
}

// Scratch for the laid-out operands, kept between calls: a fresh buffer of this size
// (hundreds of KiB) costs more in page faults than a small layer's whole arithmetic. A
// call takes the largest free buffer (growing it if needed) and gives it back; concurrent
// calls get separate ones. The memory stays allocated, at most one buffer per concurrent
// call, each as large as the largest layer it has served.
class Scratch {
 public:
  explicit Scratch(size_t words) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        buffer_ = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (buffer_.size() < words) buffer_.resize(words);
  }
  ~Scratch() {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(buffer_));
    std::sort(free_.begin(), free_.end(),
              [](const auto& a, const auto& b) { return a.size() < b.size(); });
  }
  uint64_t* data() { return buffer_.data(); }

 private:
  static inline std::mutex mutex_;
  static inline std::vector<std::vector<uint64_t>> free_;
  std::vector<uint64_t> buffer_;
};

// The attributes the handlers take: the geometry, the path and the input's bit planes
// (the fused handlers take 1-bit inputs only).
struct Attributes {
  int64_t kh, kw, sh, sw, dh, dw, top, left, isa, bits = 1;
};

// The most bit planes one call sums: 8-bit levels, whose weighted accumulators stay far
// inside int32 (255 x taps).
constexpr int64_t kMaxBits = 8;

// Where the accumulators go: `acc` (N, H_out, W_out, C_out), or, when `sense` is set,
// packed by the per-channel thresholds into `words`, `words32` uint32 words per pixel.
struct Output {
  int32_t* acc = nullptr;
  const int32_t* sense = nullptr;
  const int32_t* limit = nullptr;
  uint32_t* words = nullptr;
  int64_t words32 = 0;
};

// The kernel operand of a call: its source, and, when it was laid out ahead of the call
// (the laid handlers), that layout and the path it is for.
struct Kernel {
  KernelSource source;
  const uint64_t* laid = nullptr;
  int64_t laid_isa = kAuto;
};

// The kernel operand of the plain handlers: the (P, C_out) matrix, uint64 or uint32 rows.
ffi::Error MatrixKernel(const ffi::AnyBuffer& kernel, Kernel& out) {
  const auto kd = kernel.dimensions();
  const bool kernel64 = kernel.element_type() == ffi::U64;
  if (kd.size() != 2) return ffi::Error::InvalidArgument("the kernel must be (P, C_out)");
  if (!kernel64 && kernel.element_type() != ffi::U32)
    return ffi::Error::InvalidArgument("words must be uint32 or uint64");
  const int64_t rows32 = kernel64 ? 2 * kd[0] : kd[0];
  out.source = {kernel64 ? KernelSource::kWords64 : KernelSource::kWords32,
                kernel.untyped_data(),
                rows32,
                (rows32 + 1) / 2,
                kd[1],
                {}};
  return ffi::Error::Success();
}

// The kernel operand of the laid handlers: binflax_layout_kernel's uint64 words as uint32
// pairs (so that JAX passes it without jax_enable_x64; XLA aligns buffers to 64 bytes).
ffi::Error LaidKernel(const ffi::Buffer<ffi::U32>& laid, Kernel& out) {
  const uint64_t* h = reinterpret_cast<const uint64_t*>(laid.typed_data());
  const int64_t size = static_cast<int64_t>(laid.element_count()) / 2;
  if (size < kLaidHeader || h[0] != kLaidMagic || h[1] != kLaidVersion)
    return ffi::Error::InvalidArgument("not a kernel from binflax_layout_kernel (or its version)");
  const int64_t isa = static_cast<int64_t>(h[2]), words = static_cast<int64_t>(h[3]);
  const int64_t channels = static_cast<int64_t>(h[4]);
  if (isa < kPortable || isa > kLastIsa || words < 1 || channels < 1 ||
      kLaidHeader + LaidWords(isa, words, channels) > size)
    return ffi::Error::InvalidArgument("the laid-out kernel's header is damaged");
  out.source = {KernelSource::kLaid, h + kLaidHeader, 2 * words, words, channels, LayoutOf(isa)};
  out.laid = h + kLaidHeader;
  out.laid_isa = isa;
  return ffi::Error::Success();
}

ffi::Error Run(ffi::ThreadPool& pool, const ffi::AnyBuffer& x, const Kernel& kernel,
               const ffi::Buffer<ffi::S32>& base, Attributes a, Output output) {
  // Auto: the path the kernel was laid out for, where this CPU has it (so the caller picks
  // a path per layer by its layout: avx2_packed for a streamed kernel), else the best.
  int64_t isa = a.isa;
  if (isa == kAuto)
    isa = kernel.laid != nullptr && Supported(kernel.laid_isa) ? kernel.laid_isa : Best();
  if (!Supported(isa)) return ffi::Error::InvalidArgument("ISA not supported on this CPU");
  const auto xd = x.dimensions(), bd = base.dimensions();
  if (xd.size() != 4 || bd.size() != 3)
    return ffi::Error::InvalidArgument("x must be NHWC words, the kernel (P, C_out)");
  const int64_t bits = a.bits;
  if (bits < 1 || bits > kMaxBits || xd[0] % bits != 0)
    return ffi::Error::InvalidArgument("x's batch must stack `bits` (1 to 8) equal planes");
  const bool x64 = x.element_type() == ffi::U64;
  if (!x64 && x.element_type() != ffi::U32)
    return ffi::Error::InvalidArgument("words must be uint32 or uint64");
  if (x64 && kernel.source.kind == KernelSource::kWords32)
    return ffi::Error::InvalidArgument("uint64 input words need a uint64 kernel");
  Geometry g{xd[0], xd[1], xd[2],  xd[3] * (x64 ? 2 : 1),
             bd[0], bd[1], kernel.source.channels,  a.kh,
             a.kw,  a.sh,  a.sw,   a.dh,
             a.dw,  a.top, a.left, 0};
  const int64_t rows32 = a.kh * a.kw * g.words32;
  g.words = (rows32 + 1) / 2;
  const bool rows_match = kernel.source.kind == KernelSource::kWords32
                              ? kernel.source.rows32 == rows32
                              : kernel.source.words == g.words;
  if (!rows_match || bd[2] != g.channels)
    return ffi::Error::InvalidArgument("kernel rows or channels do not match the input");
  const Path path = PathOf(isa);
  // Patches are laid out for every plane's pixels; the output has one plane's.
  const int64_t patch_pixels = g.pixels(), pixels = patch_pixels / bits;
  const int64_t groups = Groups(g.channels, path);
  const int64_t patch_size = g.words * path.planes, group_size = GroupWords(g.words, path);
  // A kernel laid out for this path is read as it is; any other is laid out here, per
  // call, from its words (or from another path's layout: the same words, read back).
  const bool prelaid = kernel.laid != nullptr && kernel.laid_isa == isa;
  const int64_t kernel_items = prelaid ? 0 : groups;
  if (!prelaid) call_layouts.fetch_add(1, std::memory_order_relaxed);
  const int64_t patch_words = patch_pixels * patch_size;
  const int64_t layout_words = patch_words + (prelaid ? 0 : groups * group_size);
  // Fused, the accumulators are scratch too (2 per uint64 word).
  Scratch scratch(layout_words + (output.sense ? (pixels * g.channels + 1) / 2 : 0));
  uint64_t* patches = scratch.data();
  const uint64_t* laid_kernel = prelaid ? kernel.laid : patches + patch_words;
  int32_t* acc = output.sense ? reinterpret_cast<int32_t*>(patches + layout_words) : output.acc;
  const uint32_t* x32 = static_cast<const uint32_t*>(x.untyped_data());

  // Items: first the layout, then the arithmetic per (pixel block, run of channel
  // groups): at least 8 items for the threads to share, pixel blocks first (of at most
  // 256 pixels). Inside an item, tiles of 16 pixels pass every group of the run: the
  // tile's patches, accumulator rows and base rows stay in L1 while the groups fill them,
  // each group's kernel comes from L2 once per tile. When every item holds all groups it
  // also lays out its tiles' patches just before using them; otherwise (few pixels, many
  // channels) the layout phase does, in blocks of 64 pixels. Fused, last, the thresholds
  // pack the accumulators per pixel block.
  constexpr int64_t kPatchBlock = 64, kItems = 8, kTile = 16, kBlock = 256;
  const int64_t pixel_blocks =
      std::min((pixels + kTile - 1) / kTile, std::max(kItems, (pixels + kBlock - 1) / kBlock));
  const int64_t block = (pixels + pixel_blocks - 1) / pixel_blocks;
  const int64_t runs = std::min(groups, (kItems + pixel_blocks - 1) / pixel_blocks);
  const int64_t run = (groups + runs - 1) / runs;
  const int64_t patch_blocks = runs == 1 ? 0 : (patch_pixels + kPatchBlock - 1) / kPatchBlock;
  const int64_t layout_items = kernel_items + patch_blocks;
  const int64_t compute_end = layout_items + pixel_blocks * runs;
  const int32_t* base_data = base.typed_data();
  const int64_t out_pixels = g.out_height * g.out_width;
#ifdef BINFLAX_X86
  const Pack pack = isa == kPortable ? PackPortable : PackAvx2;
#else
  const Pack pack = PackPortable;
#endif
  auto write_patches = [&](int64_t start, int64_t stop) {
    std::unique_ptr<uint32_t[]> stream(new uint32_t[rows32 + 1]);
    int64_t n = start / out_pixels, oh = start / g.out_width % g.out_height;
    int64_t ow = start % g.out_width;
    for (int64_t m = start; m < stop; ++m) {
      WritePatch(g, x32, n, oh, ow, path.planes, stream.get(), patches + m * patch_size);
      if (++ow == g.out_width) {  // the next pixel, without dividing
        ow = 0;
        if (++oh == g.out_height) oh = 0, ++n;
      }
    }
  };
  // Plane j > 0's accumulators of a micro-kernel call, added 2**j times to plane 0's.
  auto compute = [&](int64_t group, int64_t start, int64_t stop) {
    const int64_t first = group * path.group(), vectors = VectorsIn(g.channels, path, group);
    const int64_t width = std::min(path.group(), g.channels - first);
    const uint64_t* group_kernel = laid_kernel + group * group_size;
    Tile tile{{}, nullptr, g.channels, width};
    int32_t plane_acc[kMaxRows * kMaxGroup];
    for (int64_t m = start; m < stop;) {
      const int64_t n_rows = stop - m >= path.rows ? path.rows : 1;
      const Micro micro = (n_rows == path.rows ? path.full : path.single)[vectors - 1];
      for (int64_t r = 0; r < n_rows; ++r)
        tile.base[r] = base_data + ((m + r) % out_pixels) * g.channels + first;
      int32_t* out = acc + m * g.channels + first;
      tile.out = out;
      tile.stride = g.channels;
      micro(patches + m * patch_size, group_kernel, g.words, tile);
      tile.out = plane_acc;
      tile.stride = kMaxGroup;
      for (int64_t j = 1; j < bits; ++j) {
        micro(patches + (j * pixels + m) * patch_size, group_kernel, g.words, tile);
        for (int64_t r = 0; r < n_rows; ++r)
          for (int64_t c = 0; c < width; ++c)
            out[r * g.channels + c] += plane_acc[r * kMaxGroup + c] * (int32_t{1} << j);
      }
      m += n_rows;
    }
  };
  std::vector<int64_t> ends = {layout_items, compute_end};
  if (output.sense) ends.push_back(compute_end + pixel_blocks);
  ParallelFor(pool, ends, [&](int64_t item) {
    if (item < kernel_items) {
      WriteKernelGroup(kernel.source, path, item, patches + patch_words + item * group_size);
    } else if (item < layout_items) {
      const int64_t start = (item - kernel_items) * kPatchBlock;
      write_patches(start, std::min(patch_pixels, start + kPatchBlock));
    } else if (item < compute_end) {
      item -= layout_items;
      const int64_t start = item % pixel_blocks * block, stop = std::min(pixels, start + block);
      const int64_t first_group = item / pixel_blocks * run;
      const int64_t last_group = std::min(groups, first_group + run);
      for (int64_t tile = start; tile < stop; tile += kTile) {
        const int64_t tile_stop = std::min(stop, tile + kTile);
        if (runs == 1)
          for (int64_t j = 0; j < bits; ++j) write_patches(j * pixels + tile, j * pixels + tile_stop);
        for (int64_t group = first_group; group < last_group; ++group)
          compute(group, tile, tile_stop);
      }
    } else {
      const int64_t start = (item - compute_end) * block;
      for (int64_t m = start; m < std::min(pixels, start + block); ++m)
        pack(acc + m * g.channels, output.sense, output.limit, g.channels, output.words32,
             output.words + m * output.words32);
    }
  });
  return ffi::Error::Success();
}

// An exception (the scratch's allocation failing) as an FFI error, not a crash of the
// process through the C interface.
template <typename F>
ffi::Error Guarded(F&& run) {
  try {
    return run();
  } catch (const std::exception& error) {
    return ffi::Error::Internal(std::string("binflax XNOR kernel: ") + error.what());
  }
}

// The accumulator output of the plain-output handlers.
ffi::Error AccOutput(ffi::ResultBuffer<ffi::S32>& out, const ffi::Buffer<ffi::S32>& base,
                     Output& output) {
  const auto od = out->dimensions(), bd = base.dimensions();
  if (od.size() != 4 || bd.size() != 3 || od[1] != bd[0] || od[2] != bd[1] || od[3] != bd[2])
    return ffi::Error::InvalidArgument("output and base shapes differ");
  output.acc = out->typed_data();
  return ffi::Error::Success();
}

// The packed-words output of the fused handlers.
ffi::Error WordsOutput(ffi::Result<ffi::AnyBuffer>& out, const ffi::Buffer<ffi::S32>& base,
                       const ffi::Buffer<ffi::S32>& sense, const ffi::Buffer<ffi::S32>& limit,
                       Output& output) {
  const auto od = out->dimensions(), bd = base.dimensions();
  const int64_t per_word = out->element_type() == ffi::U64 ? 2 : 1;
  if (out->element_type() != ffi::U32 && per_word == 1)
    return ffi::Error::InvalidArgument("packed words must be uint32 or uint64");
  if (od.size() != 4 || bd.size() != 3 || od[1] != bd[0] || od[2] != bd[1] ||
      od[3] * per_word * 32 < bd[2] || static_cast<int64_t>(sense.element_count()) != bd[2] ||
      static_cast<int64_t>(limit.element_count()) != bd[2])
    return ffi::Error::InvalidArgument("output, base, sense or limit shapes differ");
  output.sense = sense.typed_data();
  output.limit = limit.typed_data();
  output.words = static_cast<uint32_t*>(out->untyped_data());
  output.words32 = od[3] * per_word;
  return ffi::Error::Success();
}

// Runs once both checks of the operands (output, kernel) passed.
ffi::Error Checked(ffi::ThreadPool& pool, const ffi::AnyBuffer& x, const ffi::Buffer<ffi::S32>& base,
                   Attributes a, const Output& output, const Kernel& kernel,
                   ffi::Error output_check, ffi::Error kernel_check) {
  if (output_check.failure()) return output_check;
  if (kernel_check.failure()) return kernel_check;
  return Guarded([&] { return Run(pool, x, kernel, base, a, output); });
}

ffi::Error XnorConv(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer kernel,
                    ffi::Buffer<ffi::S32> base, ffi::ResultBuffer<ffi::S32> out, int64_t kh,
                    int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top,
                    int64_t left, int64_t isa, int64_t bits) {
  Kernel k;
  Output output;
  ffi::Error output_check = AccOutput(out, base, output);
  ffi::Error kernel_check = MatrixKernel(kernel, k);
  return Checked(pool, x, base, {kh, kw, sh, sw, dh, dw, top, left, isa, bits}, output, k,
                 std::move(output_check), std::move(kernel_check));
}

ffi::Error XnorConvLaid(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::Buffer<ffi::U32> laid,
                        ffi::Buffer<ffi::S32> base, ffi::ResultBuffer<ffi::S32> out, int64_t kh,
                        int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top,
                        int64_t left, int64_t isa, int64_t bits) {
  Kernel k;
  Output output;
  ffi::Error output_check = AccOutput(out, base, output);
  ffi::Error kernel_check = LaidKernel(laid, k);
  return Checked(pool, x, base, {kh, kw, sh, sw, dh, dw, top, left, isa, bits}, output, k,
                 std::move(output_check), std::move(kernel_check));
}

ffi::Error XnorConvWords(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer kernel,
                         ffi::Buffer<ffi::S32> base, ffi::Buffer<ffi::S32> sense,
                         ffi::Buffer<ffi::S32> limit, ffi::Result<ffi::AnyBuffer> out, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top,
                         int64_t left, int64_t isa) {
  Kernel k;
  Output output;
  ffi::Error output_check = WordsOutput(out, base, sense, limit, output);
  ffi::Error kernel_check = MatrixKernel(kernel, k);
  return Checked(pool, x, base, {kh, kw, sh, sw, dh, dw, top, left, isa}, output, k,
                 std::move(output_check), std::move(kernel_check));
}

ffi::Error XnorConvWordsLaid(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::Buffer<ffi::U32> laid,
                             ffi::Buffer<ffi::S32> base, ffi::Buffer<ffi::S32> sense,
                             ffi::Buffer<ffi::S32> limit, ffi::Result<ffi::AnyBuffer> out,
                             int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                             int64_t dw, int64_t top, int64_t left, int64_t isa) {
  Kernel k;
  Output output;
  ffi::Error output_check = WordsOutput(out, base, sense, limit, output);
  ffi::Error kernel_check = LaidKernel(laid, k);
  return Checked(pool, x, base, {kh, kw, sh, sw, dh, dw, top, left, isa}, output, k,
                 std::move(output_check), std::move(kernel_check));
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxXnorConv, XnorConv,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>() BINFLAX_CONV_ATTRIBUTES
                                  .Attr<int64_t>("bits"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxXnorConvWords, XnorConvWords,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>() BINFLAX_CONV_ATTRIBUTES);

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxXnorConvLaid, XnorConvLaid,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>() BINFLAX_CONV_ATTRIBUTES
                                  .Attr<int64_t>("bits"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BinflaxXnorConvWordsLaid, XnorConvWordsLaid,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>() BINFLAX_CONV_ATTRIBUTES);

// For Python (ctypes): the best path on this CPU and whether a path runs here.
extern "C" int64_t binflax_best_isa() { return Best(); }

extern "C" int64_t binflax_isa_supported(int64_t isa) { return Supported(isa); }

// How many calls so far laid out their own kernel (every call but a laid handler's whose
// kernel is laid out for the path it runs).
extern "C" int64_t binflax_call_layouts() { return call_layouts.load(); }

// Words (uint64) past the header that a kernel of `words` reduction words and `channels`
// output channels takes laid out for path `isa` (any path, on any CPU); -1 for an
// unknown path.
extern "C" int64_t binflax_laid_words(int64_t isa, int64_t words, int64_t channels) {
  if (isa < kPortable || isa > kLastIsa || words < 1 || channels < 1) return -1;
  return LaidWords(isa, words, channels);
}

// Lays out the (rows, channels) kernel matrix of packing.xnor_kernel (`kernel64`: uint64
// words, else uint32 rows) for path `isa` into `out` (`capacity` uint64 words, at least
// the header and binflax_laid_words'), the header first and zeros after the groups:
// what the laid handlers read as they are when they run that path. Any path can be laid
// out on any CPU (it is data). 0, or -1 for an unknown path or a buffer too small.
extern "C" int64_t binflax_layout_kernel(int64_t isa, const void* kernel, int64_t kernel64,
                                         int64_t rows, int64_t channels, uint64_t* out,
                                         int64_t capacity) {
  const int64_t rows32 = kernel64 ? 2 * rows : rows, words = (rows32 + 1) / 2;
  const int64_t needed = binflax_laid_words(isa, words, channels);
  if (needed < 0 || capacity < kLaidHeader + needed) return -1;
  const Layout layout = LayoutOf(isa);
  const KernelSource source{kernel64 ? KernelSource::kWords64 : KernelSource::kWords32,
                            kernel,
                            rows32,
                            words,
                            channels,
                            {}};
  std::fill(out, out + capacity, uint64_t{0});
  const uint64_t header[kLaidHeader] = {kLaidMagic, kLaidVersion,
                                         static_cast<uint64_t>(isa), static_cast<uint64_t>(words),
                                         static_cast<uint64_t>(channels)};
  std::copy(header, header + kLaidHeader, out);
  const int64_t group_words = GroupWords(words, layout);
  for (int64_t group = 0; group < Groups(channels, layout); ++group)
    WriteKernelGroup(source, layout, group, out + kLaidHeader + group * group_words);
  return 0;
}
