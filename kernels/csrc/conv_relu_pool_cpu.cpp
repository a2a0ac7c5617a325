// Optimised CPU fused conv + bias + ReLU + max-pool (OpenMP).
//
// Forward: conv2d_forward_cpu_images computes one image's conv output (K, OH, OW) at a time
// into a buffer of the thread that owns the image (50 KB for 16 x 28 x 28 float32: it stays
// in L2), and the ReLU and the pool run on it there; only the pooled output and a one-byte
// argmax per pooled output reach memory (the unfused ops write the conv output, read it for
// the ReLU, write and read the ReLU output, and write int64 pool indices).
// Backward, for stride 1, one group and input channels in whole vectors (x and w finite):
// from the nonzeros of the conv output gradient alone, at most one per pooled output
// (conv_relu_pool_sparse.h). Otherwise, where the conv's grad input is itself a conv (or
// not needed): one parallel region
// over the batch (conv2d_backward_cpu_images); each thread rebuilds its images' conv output
// gradient gz plane by plane (the pooled gradient placed where the argmax and the ReLU say,
// zeros elsewhere) into a buffer that stays in L2, and reads it at once for grad input and
// grad weight. Otherwise block by block of images: the block's gz is rebuilt into a
// workspace of the calling thread (kept between calls, so its pages are mapped once),
// conv2d_backward_cpu runs on the block, and the blocks' sums are added in order.
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <memory>

#include "conv_relu_pool.h"
#include "conv_relu_pool_sparse.h"

namespace dlsys {

namespace {

template <typename T>
inline T relu(T v) {
  return v <= T(0) ? T(0) : v;  // NaN stays NaN
}

// One step of the selection walk: take v if it beats best or is NaN.
template <typename T>
inline void take(T v, int a, T &best, int &at) {
  const bool t = v > best || v != v;
  best = t ? v : best;
  at = t ? a : at;
}

inline bool is_2x2_stride_2(const PoolDims &p) {
  return p.KH == 2 && p.KW == 2 && p.SH == 2 && p.SW == 2 && p.PH == 0 && p.PW == 0;
}

// relu_pool_plane for 2x2 windows, stride 2, no padding: the walk over the four elements
// written as selects (double, and float without AVX-512; GCC does not vectorise the strided
// loads: it compiles to compares and branches, a float32 version below does not).
template <typename T>
void relu_pool_plane_2x2(const PoolDims &p, int64_t OW, const T *z, T *out, uint8_t *arg) {
  for (int64_t i = 0; i < p.QH; ++i) {
    const T *r0 = z + 2 * i * OW, *r1 = r0 + OW;
    T *o = out + i * p.QW;
    uint8_t *g = arg + i * p.QW;
    for (int64_t j = 0; j < p.QW; ++j) {
      T best = relu(r0[2 * j]);
      int at = 0;
      take(relu(r0[2 * j + 1]), 1, best, at);
      take(relu(r1[2 * j]), 2, best, at);
      take(relu(r1[2 * j + 1]), 3, best, at);
      o[j] = best;
      g[j] = static_cast<uint8_t>(at);
    }
  }
}

#if defined(__AVX512F__)
// The float32 2x2/2 paths with AVX-512: 16 pooled outputs per step. Each conv row pair is
// loaded with masked loads (lanes past the row are neither read nor written), split into
// even and odd columns by one permute each, and walked as the scalar code walks it.
inline __m512 relu16(__m512 v) {
  return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ),
                            _mm512_setzero_ps());  // v <= 0 -> 0; NaN stays NaN
}

inline void take16(__m512 v, int a, __m512 &best, __m512i &at) {
  const __mmask16 t = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  best = _mm512_mask_mov_ps(best, t, v);
  at = _mm512_mask_mov_epi32(at, t, _mm512_set1_epi32(a));
}

// Columns 2j and 2j + 1 of a row for the cnt (<= 16) pooled columns from j0.
inline void load_pairs(const float *row, int64_t cnt, __m512 &even, __m512 &odd) {
  const int64_t n = 2 * cnt;
  const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>(n <= 16 ? 0u : (1u << (n - 16)) - 1u);
  const __m512 lo = _mm512_maskz_loadu_ps(m0, row), hi = _mm512_maskz_loadu_ps(m1, row + 16);
  const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  even = _mm512_permutex2var_ps(lo, ie, hi);
  odd = _mm512_permutex2var_ps(lo, io, hi);
}

// row[2j] = even[j], row[2j + 1] = odd[j] for the cnt pooled columns from j0.
inline void store_pairs(float *row, int64_t cnt, __m512 even, __m512 odd) {
  const int64_t n = 2 * cnt;
  const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>(n <= 16 ? 0u : (1u << (n - 16)) - 1u);
  const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i ih = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  _mm512_mask_storeu_ps(row, m0, _mm512_permutex2var_ps(even, il, odd));
  _mm512_mask_storeu_ps(row + 16, m1, _mm512_permutex2var_ps(even, ih, odd));
}

void relu_pool_plane_2x2(const PoolDims &p, int64_t OW, const float *z, float *out,
                         uint8_t *arg) {
  for (int64_t i = 0; i < p.QH; ++i) {
    const float *r0 = z + 2 * i * OW, *r1 = r0 + OW;
    for (int64_t j0 = 0; j0 < p.QW; j0 += 16) {
      const int64_t cnt = std::min<int64_t>(16, p.QW - j0);
      const __mmask16 m = static_cast<__mmask16>((1u << cnt) - 1u);
      __m512 a0, a1, a2, a3;
      load_pairs(r0 + 2 * j0, cnt, a0, a1);
      load_pairs(r1 + 2 * j0, cnt, a2, a3);
      __m512 best = relu16(a0);
      __m512i at = _mm512_setzero_si512();
      take16(relu16(a1), 1, best, at);
      take16(relu16(a2), 2, best, at);
      take16(relu16(a3), 3, best, at);
      _mm512_mask_storeu_ps(out + i * p.QW + j0, m, best);
      _mm512_mask_cvtepi32_storeu_epi8(arg + i * p.QW + j0, m, at);
    }
  }
}

// gz (OH, OW) = the pooled gradient of the 2x2/2 windows placed where arg and ReLU say, 0
// elsewhere (the whole plane is written: no zeroing first). Windows do not overlap, so each
// gz element gets at most one pooled gradient, as unpool_plane's sum gives it.
void unpool_plane_2x2(const PoolDims &p, int64_t OH, int64_t OW, const float *gout,
                      const float *out, const uint8_t *arg, float *gz) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < p.QH; ++i) {
    float *r0 = gz + 2 * i * OW, *r1 = r0 + OW;
    for (int64_t j0 = 0; j0 < p.QW; j0 += 16) {
      const int64_t cnt = std::min<int64_t>(16, p.QW - j0), e = i * p.QW + j0;
      const __mmask16 m = static_cast<__mmask16>((1u << cnt) - 1u);
      const __m512 o = _mm512_maskz_loadu_ps(m, out + e);
      const __mmask16 pass = _mm512_cmp_ps_mask(o, zero, _CMP_NLE_UQ);  // > 0 or NaN
      const __m512 g = _mm512_maskz_loadu_ps(pass & m, gout + e);
      const __m512i a = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, arg + e));
      __m512 v[4];
      for (int k = 0; k < 4; ++k)
        v[k] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(k)), g);
      store_pairs(r0 + 2 * j0, cnt, v[0], v[1]);
      store_pairs(r1 + 2 * j0, cnt, v[2], v[3]);
    }
    if (OW > 2 * p.QW) r0[OW - 1] = r1[OW - 1] = 0.0f;  // an odd last column: no window
  }
  std::fill(gz + 2 * p.QH * OW, gz + OH * OW, 0.0f);  // an odd last row: no window
}
#endif

// Double (and float without AVX-512): zero the plane, then scatter.
template <typename T>
void unpool_plane_2x2(const PoolDims &p, int64_t OH, int64_t OW, const T *gout, const T *out,
                      const uint8_t *arg, T *gz) {
  std::fill(gz, gz + OH * OW, T(0));
  unpool_plane(p, OW, gout, out, arg, gz);
}

// A workspace of the calling thread, kept between calls (grown, never shrunk).
template <typename T>
T *workspace(int64_t n) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local int64_t cap = 0;
  if (n > cap) {
    buf.reset(new T[static_cast<size_t>(n)]);
    cap = n;
  }
  return buf.get();
}

}  // namespace

template <typename T>
void conv_relu_pool_forward_cpu(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                const T *b, T *out, uint8_t *arg, int threads) {
  const int64_t P = d.P(), Q = p.QH * p.QW;
  const bool fast = is_2x2_stride_2(p);
  conv2d_forward_cpu_images<T>(d, x, w, b, threads, [&](int64_t n, T *z) {
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t e = (n * d.K + k) * Q;
      if (fast)
        relu_pool_plane_2x2(p, d.OW, z + k * P, out + e, arg + e);
      else
        relu_pool_plane(p, d.OH, d.OW, z + k * P, out + e, arg + e);
    }
  });
}

// Images per backward block: the block's conv output gradient should stay in L2
// (kBlockBytes) while the conv backward reads it; at least kMinBlockImages so that the conv
// backward's per-call work (weight packing, per-chunk partial sums) stays small beside it.
constexpr int64_t kBlockBytes = int64_t{1} << 20;
constexpr int64_t kMinBlockImages = 16;

template <typename T>
void conv_relu_pool_backward_cpu(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                 const T *gout, const T *out, const uint8_t *arg, T *gx, T *gw,
                                 T *gb, int threads) {
  const int64_t P = d.P(), Q = p.QH * p.QW, img = d.K * P;
  const bool fast = is_2x2_stride_2(p);
  // From the nonzeros of the conv output gradient alone, where that is exact
  // (conv_relu_pool_sparse.h)
  if (cpu::sparse_backward_applies(d, gw ? x : nullptr, w)) {
    cpu::conv_relu_pool_backward_sparse(d, p, x, w, gout, out, arg, gx, gw, gb, threads);
    return;
  }
  // Image by image in one parallel region where the conv backward allows it: each image's
  // gz is rebuilt into a buffer of its thread and read at once for grad input and weight.
  const auto unpool_image = [&](int64_t n, T *g) {
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t e = (n * d.K + k) * Q;
      if (fast) {
        unpool_plane_2x2(p, d.OH, d.OW, gout + e, out + e, arg + e, g + k * P);
      } else {
        std::fill(g + k * P, g + (k + 1) * P, T(0));
        unpool_plane(p, d.OW, gout + e, out + e, arg + e, g + k * P);
      }
    }
  };
  if (conv2d_backward_cpu_images<T>(d, x, w, gx, gw, gb, threads, unpool_image)) return;
  // Otherwise (a grad input by GEMM + col2im) block by block of images:
  if (gw) std::fill(gw, gw + d.w_numel(), T(0));
  if (gb) std::fill(gb, gb + d.K, T(0));
  const int64_t per = std::max<int64_t>(
      kMinBlockImages, kBlockBytes / std::max<int64_t>(1, img * static_cast<int64_t>(sizeof(T))));
  const int64_t B = std::max<int64_t>(1, std::min(d.N, per));
  T *gz = workspace<T>(B * img + (gw ? d.w_numel() : 0) + (gb ? d.K : 0));
  T *gwb = gz + B * img, *gbb = gwb + (gw ? d.w_numel() : 0);  // one block's sums
  for (int64_t n0 = 0; n0 < d.N; n0 += B) {
    ConvDims db = d;
    db.N = std::min(B, d.N - n0);
#pragma omp parallel for num_threads(threads) schedule(static) if (db.N > 1)
    for (int64_t nb = 0; nb < db.N; ++nb) unpool_image(n0 + nb, gz + nb * img);
    const int64_t xo = n0 * d.C * d.H * d.W;
    conv2d_backward_cpu<T>(db, x ? x + xo : nullptr, w, gz, gx ? gx + xo : nullptr,
                           gw ? gwb : nullptr, gb ? gbb : nullptr, threads);
    // blocks added in order: the result does not depend on the thread count
    if (gw)
      for (int64_t i = 0; i < d.w_numel(); ++i) gw[i] += gwb[i];
    if (gb)
      for (int64_t k = 0; k < d.K; ++k) gb[k] += gbb[k];
  }
}

template void conv_relu_pool_forward_cpu<float>(const ConvDims &, const PoolDims &,
                                                const float *, const float *, const float *,
                                                float *, uint8_t *, int);
template void conv_relu_pool_forward_cpu<double>(const ConvDims &, const PoolDims &,
                                                 const double *, const double *, const double *,
                                                 double *, uint8_t *, int);
template void conv_relu_pool_backward_cpu<float>(const ConvDims &, const PoolDims &,
                                                 const float *, const float *, const float *,
                                                 const float *, const uint8_t *, float *, float *,
                                                 float *, int);
template void conv_relu_pool_backward_cpu<double>(const ConvDims &, const PoolDims &,
                                                  const double *, const double *, const double *,
                                                  const double *, const uint8_t *, double *,
                                                  double *, double *, int);

}  // namespace dlsys
