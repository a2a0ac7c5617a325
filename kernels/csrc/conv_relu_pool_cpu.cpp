// Optimised CPU fused conv + bias + ReLU + max-pool (OpenMP).
//
// Forward: conv2d_forward_cpu_images computes one image's conv output (K, OH, OW) at a time
// into a buffer of the thread that owns the image (50 KB for 16 x 28 x 28 float32: it stays
// in L2), and the ReLU and the pool run on it there; only the pooled output and a one-byte
// argmax per pooled output reach memory (the unfused ops write the conv output, read it for
// the ReLU, write and read the ReLU output, and write int64 pool indices).
// Backward, block by block of images: the block's conv output gradient gz is rebuilt plane
// by plane (zero, scatter the pooled gradient where the argmax and the ReLU say) into a
// workspace small enough to stay in L2, conv2d_backward_cpu runs on the block, and the
// blocks' weight and bias gradients are added in order. The workspace belongs to the
// calling thread and is kept between calls, so its pages are mapped once.
#include <omp.h>

#include <algorithm>
#include <memory>

#include "conv_relu_pool.h"

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

// relu_pool_plane for 2x2 windows, stride 2, no padding: the walk over the four elements
// written as selects, so GCC vectorises it along the row.
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
  const bool fast = p.KH == 2 && p.KW == 2 && p.SH == 2 && p.SW == 2 && p.PH == 0 && p.PW == 0;
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
    const int64_t planes = db.N * d.K, e0 = n0 * d.K;
#pragma omp parallel for num_threads(threads) schedule(static) if (planes > 1)
    for (int64_t nk = 0; nk < planes; ++nk) {
      T *g = gz + nk * P;
      std::fill(g, g + P, T(0));
      unpool_plane(p, d.OW, gout + (e0 + nk) * Q, out + (e0 + nk) * Q, arg + (e0 + nk) * Q, g);
    }
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
