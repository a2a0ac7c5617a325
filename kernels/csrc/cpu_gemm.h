// CPU building blocks of the convolutions: vector types, a packed GEMM (panels of MR rows,
// an MR x 2-vector register block, K blocked for L1), im2col / col2im and aligned buffers.
// Header-only templates, used by conv2d_cpu.cpp.
//
// Vector sizes: AVX-512 64-byte vectors with an 8-row block; AVX2 32-byte with 6 rows;
// otherwise 16 bytes. The GEMM computes C (M x N) (+)= A * B with A packed by pack_a.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv2d.h"

namespace dlsys {
namespace cpu {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr int kMR = 8;
#elif defined(__AVX2__) || defined(__AVX__)
constexpr int kVecBytes = 32;
constexpr int kMR = 6;
#else
constexpr int kVecBytes = 16;
constexpr int kMR = 6;
#endif
constexpr int64_t kKC = 256;  // k-block: a float32 B tile is 256 x 32 x 4 B = 32 KB (L1)

template <typename T>
struct Tile {
  static constexpr int MR = kMR;
  static constexpr int NR = 2 * kVecBytes / static_cast<int>(sizeof(T));
};

// A vector of VL = kVecBytes / sizeof(T) lanes (GCC/Clang vector extension): arrays of these
// stay in registers, where arrays of scalars in an `omp simd` loop were kept on the stack
// (an accumulator load and store per FMA, half the FMA rate).
template <typename T>
struct VecType {
  typedef T type __attribute__((vector_size(kVecBytes)));
};

template <typename T>
inline typename VecType<T>::type vload(const T *p) {
  typename VecType<T>::type v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

template <typename T>
inline void vstore(T *p, typename VecType<T>::type v) {
  std::memcpy(p, &v, sizeof v);
}

// Pack A (M x K, row-major, leading dimension lda) into ceil(M/MR) panels of K x MR; rows
// beyond M are zero. Ap must hold ceil(M/MR) * MR * K elements.
template <typename T>
void pack_a(int64_t M, int64_t K, const T *A, int64_t lda, T *Ap) {
  constexpr int MR = Tile<T>::MR;
  for (int64_t i0 = 0; i0 < M; i0 += MR) {
    T *dst = Ap + i0 * K;  // panel i0/MR is (K, MR)
    const int64_t mr = std::min<int64_t>(MR, M - i0);
    for (int64_t i = 0; i < MR; ++i) {
      if (i < mr) {
        const T *src = A + (i0 + i) * lda;
        for (int64_t p = 0; p < K; ++p) dst[p * MR + i] = src[p];
      } else {
        for (int64_t p = 0; p < K; ++p) dst[p * MR + i] = T(0);
      }
    }
  }
}

// C[mr x nr] (+)= Ap (kc x MR) * B (kc x NR, leading dimension ldb).
template <typename T>
inline void micro_kernel(int64_t kc, const T *__restrict Ap, const T *__restrict B, int64_t ldb,
                         T *__restrict C, int64_t ldc, int64_t mr, int64_t nr, bool accumulate) {
  using V = typename VecType<T>::type;
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR, VL = NR / 2;
  V acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (int64_t p = 0; p < kc; ++p) {
    const V b0 = vload(B + p * ldb), b1 = vload(B + p * ldb + VL);
    const T *a = Ap + p * MR;
    for (int i = 0; i < MR; ++i) {
      const V ai = a[i] - V{};  // broadcast (x - 0 folds to x; 0 + x would not: -0)
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i) {
      T *c = C + i * ldc;
      if (accumulate) {
        vstore(c, vload(c) + acc[i][0]);
        vstore(c + VL, vload(c + VL) + acc[i][1]);
      } else {
        vstore(c, acc[i][0]);
        vstore(c + VL, acc[i][1]);
      }
    }
  } else {
    T tmp[NR];
    for (int64_t i = 0; i < mr; ++i) {
      vstore(tmp, acc[i][0]);
      vstore(tmp + VL, acc[i][1]);
      T *c = C + i * ldc;
      for (int64_t j = 0; j < nr; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }
  }
}

// C (M x N, ldc) (+)= A * B with A pre-packed by pack_a (M x K) and B row-major (K x N, ldb).
// btmp holds KC * NR elements (the zero-padded tail tile of B).
template <typename T>
void gemm_packed(int64_t M, int64_t N, int64_t K, const T *Ap, const T *B, int64_t ldb, T *C,
                 int64_t ldc, bool accumulate, T *btmp) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool acc = accumulate || k0 > 0;
    for (int64_t j0 = 0; j0 < N; j0 += NR) {
      const int64_t nr = std::min<int64_t>(NR, N - j0);
      const T *Bt = B + k0 * ldb + j0;
      int64_t ldbt = ldb;
      if (nr < NR) {
        for (int64_t p = 0; p < kc; ++p) {
          T *dst = btmp + p * NR;
          for (int64_t j = 0; j < NR; ++j) dst[j] = j < nr ? Bt[p * ldb + j] : T(0);
        }
        Bt = btmp;
        ldbt = NR;
      }
      for (int64_t i0 = 0; i0 < M; i0 += MR) {
        micro_kernel<T>(kc, Ap + i0 * K + k0 * MR, Bt, ldbt, C + i0 * ldc + j0, ldc,
                        std::min<int64_t>(MR, M - i0), nr, acc);
      }
    }
  }
}

template <typename T>
int64_t packed_size(int64_t M, int64_t K) {
  constexpr int MR = Tile<T>::MR;
  return (M + MR - 1) / MR * MR * K;
}

// Valid output columns [lo, hi) for kernel column offset `off` (= s*dil - pad): those ow with
// 0 <= ow*stride + off < W.
inline void valid_range(int64_t off, int64_t stride, int64_t W, int64_t OW, int64_t &lo,
                        int64_t &hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = W - off <= 0 ? 0 : (W - off - 1) / stride + 1;
  lo = std::min(lo, OW);
  hi = std::max(lo, std::min(hi, OW));
}

// Xcol (CRS x P) of one image and group: xg is (Cg, H, W).
template <typename T>
void im2col(const ConvDims &d, const T *xg, T *col) {
  const int64_t P = d.P();
  for (int64_t c = 0; c < d.Cg(); ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s) {
        T *dst = col + ((c * d.R + r) * d.S + s) * P;
        const int64_t off = s * d.dil_w - d.pad_left;
        int64_t lo, hi;
        valid_range(off, d.stride_w, d.W, d.OW, lo, hi);
        for (int64_t oh = 0; oh < d.OH; ++oh) {
          T *out = dst + oh * d.OW;
          const int64_t ih = oh * d.stride_h - d.pad_top + r * d.dil_h;
          if (ih < 0 || ih >= d.H) {
            std::fill(out, out + d.OW, T(0));
            continue;
          }
          const T *in = xg + (c * d.H + ih) * d.W + off;
          std::fill(out, out + lo, T(0));
          if (d.stride_w == 1) {
            std::copy(in + lo, in + hi, out + lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * d.stride_w];
          }
          std::fill(out + hi, out + d.OW, T(0));
        }
      }
}

// dx (Cg, H, W) += col2im(col (CRS x P)).
template <typename T>
void col2im_add(const ConvDims &d, const T *col, T *dxg) {
  const int64_t P = d.P();
  for (int64_t c = 0; c < d.Cg(); ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s) {
        const T *src = col + ((c * d.R + r) * d.S + s) * P;
        const int64_t off = s * d.dil_w - d.pad_left;
        int64_t lo, hi;
        valid_range(off, d.stride_w, d.W, d.OW, lo, hi);
        for (int64_t oh = 0; oh < d.OH; ++oh) {
          const int64_t ih = oh * d.stride_h - d.pad_top + r * d.dil_h;
          if (ih < 0 || ih >= d.H) continue;
          const T *in = src + oh * d.OW;
          T *out = dxg + (c * d.H + ih) * d.W + off;
          if (d.stride_w == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] += in[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow * d.stride_w] += in[ow];
          }
        }
      }
}


template <typename T>
struct Vec {
  static constexpr int VL = kVecBytes / static_cast<int>(sizeof(T));
};

#if defined(__AVX512F__)
// r[i][j] -> r[j][i] for a 16 x 16 float32 block in registers (unpack, then 128-bit lane
// shuffles).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), e = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  // r[4i + j] now holds, in each 128-bit lane l, column 4l + j of rows 4i..4i+3
  for (int j = 0; j < 4; ++j) {
    const __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);   // lanes 0,1 | 0,1
    const __m512 b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);   // lanes 2,3 | 2,3
    const __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 e = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    t[j] = _mm512_shuffle_f32x4(a, c, 0x88);       // column j
    t[4 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);   // column 4 + j
    t[8 + j] = _mm512_shuffle_f32x4(b, e, 0x88);   // column 8 + j
    t[12 + j] = _mm512_shuffle_f32x4(b, e, 0xDD);  // column 12 + j
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#endif

// dst (P, ldk) = src (Kg, P) transposed, columns Kg..ldk zero.
template <typename T>
void transpose_rows(int64_t Kg, int64_t P, const T *src, int64_t ldk, T *dst) {
  for (int64_t p = 0; p < P; ++p) std::fill(dst + p * ldk + Kg, dst + (p + 1) * ldk, T(0));
  for (int64_t k = 0; k < Kg; ++k) {  // reads along rows; the writes stay in L1
    const T *row = src + k * P;
    for (int64_t p = 0; p < P; ++p) dst[p * ldk + k] = row[p];
  }
}

#if defined(__AVX512F__)
// float32: 16 x 16 blocks transposed in registers (transpose16, cpu_gemm.h).
template <>
inline void transpose_rows<float>(int64_t Kg, int64_t P, const float *src, int64_t ldk,
                                  float *dst) {
  for (int64_t k0 = 0; k0 < ldk; k0 += 16)
    for (int64_t p0 = 0; p0 < P; p0 += 16) {
      const int64_t n = std::min<int64_t>(16, P - p0);
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = k0 + i < Kg ? _mm512_maskz_loadu_ps(m, src + (k0 + i) * P + p0)
                           : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t j = 0; j < n; ++j) _mm512_storeu_ps(dst + (p0 + j) * ldk + k0, r[j]);
    }
}
#endif

// A buffer of n elements whose data() is 64-byte aligned.
template <typename T>
struct Aligned {
  std::vector<T> v;
  T *p = nullptr;
  explicit Aligned(int64_t n) : v(static_cast<size_t>(n > 0 ? n + 64 / sizeof(T) : 0)) {
    if (n > 0) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
      p = v.data() + ((64 - a % 64) % 64) / sizeof(T);
    }
  }
  T *data() { return p; }
};

}  // namespace cpu
}  // namespace dlsys
