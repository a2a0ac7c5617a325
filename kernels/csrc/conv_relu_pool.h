// Fused conv2d + bias + ReLU + max-pool, NCHW: one forward, one backward.
//
// Shapes (all tensors contiguous, row-major; conv sizes as in conv2d.h):
//   x    is (N, C, H, W)           input
//   w    is (K, C/G, R, S)         weight;  b is (K,) or absent
//   z    is (N, K, OH, OW)         z = relu(conv2d(x, w, b)); never stored by the forward
//   out  is (N, K, QH, QW)         out[n,k,i,j] = max over the window of z, where the window is
//                                  rows i*SH - PH + [0, KH), columns j*SW - PW + [0, KW)
//                                  clipped to [0, OH) x [0, OW) (the padding is -inf)
//   arg  is (N, K, QH, QW) uint8   the selected element's place in its (unclipped) window:
//                                  (ih - (i*SH - PH)) * KW + (iw - (j*SW - PW)), < KH*KW <= 256
//   QH = (OH + 2*PH - KH) / SH + 1 (same for QW), PH <= KH / 2 (as in F.max_pool2d)
//
// Selection (F.max_pool2d's CPU kernel): the window is walked row by row; an element is
// taken when it is greater than the best so far or NaN. So among equal maxima the first
// wins, and a NaN (relu keeps NaN) wins over numbers, the last NaN over earlier ones.
//
// Backward: gz[n,k,arg position of (i,j)] += gout[n,k,i,j] for every pooled output in row-major
// order, where ReLU lets it through: out[n,k,i,j] is > 0 or NaN (torch's threshold_backward
// on the ReLU output; the selected z is out itself). Then the conv backward of gz.
//
// Implementations, each validated against the reference (tests/kernels):
//   conv_relu_pool_ref.cpp   plain loops over conv2d_*_ref and the plane functions below
//   conv_relu_pool_cpu.cpp   image by image: conv into a per-thread buffer held in cache, then
//                            pooled there; backward builds gz plane by plane, then conv backward
//   conv_relu_pool_cuda.cu   conv into a workspace, a pool kernel, a gather kernel for gz
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "conv2d.h"

namespace dlsys {

struct PoolDims {
  int64_t KH, KW;  // window
  int64_t SH, SW;  // stride
  int64_t PH, PW;  // padding on each side
  int64_t QH, QW;  // pooled output height, width

  int64_t window() const { return KH * KW; }
};

// Build PoolDims from the flat list Python passes (order: KH KW SH SW PH PW QH QW) and check
// them against the conv output (d.OH, d.OW). Throws std::invalid_argument naming the field.
PoolDims pool_dims_from(const ConvDims &d, const std::vector<int64_t> &v);

inline int64_t crp_out_numel(const ConvDims &d, const PoolDims &p) {
  return d.N * d.K * p.QH * p.QW;
}

// ReLU + max-pool of one plane: z (OH, OW) holds the conv output plus bias (before ReLU);
// out and arg are (QH, QW).
template <typename T>
inline void relu_pool_plane(const PoolDims &p, int64_t OH, int64_t OW, const T *z, T *out,
                            uint8_t *arg) {
  for (int64_t i = 0; i < p.QH; ++i) {
    const int64_t h0 = i * p.SH - p.PH;
    const int64_t ha = h0 < 0 ? 0 : h0, hb = h0 + p.KH < OH ? h0 + p.KH : OH;
    for (int64_t j = 0; j < p.QW; ++j) {
      const int64_t w0 = j * p.SW - p.PW;
      const int64_t wa = w0 < 0 ? 0 : w0, wb = w0 + p.KW < OW ? w0 + p.KW : OW;
      T best = -INFINITY;
      int64_t at = (ha - h0) * p.KW + (wa - w0);
      for (int64_t h = ha; h < hb; ++h)
        for (int64_t w = wa; w < wb; ++w) {
          const T v0 = z[h * OW + w];
          const T v = v0 <= T(0) ? T(0) : v0;  // relu; NaN stays NaN
          if (v > best || std::isnan(v)) {
            best = v;
            at = (h - h0) * p.KW + (w - w0);
          }
        }
      out[i * p.QW + j] = best;
      arg[i * p.QW + j] = static_cast<uint8_t>(at);
    }
  }
}

// gz (OH, OW), zeroed by the caller, += the pooled gradient gout (QH, QW) at the selected
// places where ReLU passes it (out > 0 or NaN), in row-major order of the pooled outputs.
template <typename T>
inline void unpool_plane(const PoolDims &p, int64_t OW, const T *gout, const T *out,
                         const uint8_t *arg, T *gz) {
  for (int64_t i = 0; i < p.QH; ++i)
    for (int64_t j = 0; j < p.QW; ++j) {
      const int64_t e = i * p.QW + j;
      if (out[e] <= T(0)) continue;  // ReLU's gradient is 0 there (NaN passes)
      const int64_t a = arg[e];
      const int64_t h = i * p.SH - p.PH + a / p.KW, w = j * p.SW - p.PW + a % p.KW;
      gz[h * OW + w] += gout[e];
    }
}

// Reference (plain loops). b may be null. gx, gw, gb may be null: null ones are not computed.
template <typename T>
void conv_relu_pool_forward_ref(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                const T *b, T *out, uint8_t *arg);
template <typename T>
void conv_relu_pool_backward_ref(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                 const T *gout, const T *out, const uint8_t *arg, T *gx, T *gw,
                                 T *gb);

// Optimised CPU (OpenMP with `threads` threads).
template <typename T>
void conv_relu_pool_forward_cpu(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                const T *b, T *out, uint8_t *arg, int threads);
template <typename T>
void conv_relu_pool_backward_cpu(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                 const T *gout, const T *out, const uint8_t *arg, T *gx, T *gw,
                                 T *gb, int threads);

#if DLSYS_WITH_CUDA
// CUDA float32 on `stream`; the conv output lives in a stream-ordered workspace.
void conv_relu_pool_forward_cuda(const ConvDims &d, const PoolDims &p, const float *x,
                                 const float *w, const float *b, float *out, uint8_t *arg,
                                 uintptr_t stream);
void conv_relu_pool_backward_cuda(const ConvDims &d, const PoolDims &p, const float *x,
                                  const float *w, const float *gout, const float *out,
                                  const uint8_t *arg, float *gx, float *gw, float *gb,
                                  uintptr_t stream);
#endif

}  // namespace dlsys
