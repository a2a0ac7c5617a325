// The fused block's backward from the pooled gradient itself (conv_relu_pool_cpu.cpp uses it
// where sparse_backward_applies): a conv output gradient rebuilt from a max-pool is zero
// except at one element per pooled output (the argmax, where the ReLU passes), so a 2x2/2
// pool leaves at most a quarter of it nonzero. The dense backward multiplies all of it;
// this one scatters each nonzero g at conv output (k, oh, ow) instead:
//   grad input   gx[c, oh - pt + r, ow - pl + s] += g * w[k, c, r, s]
//   grad weight  gw[k, c, r, s] += g * x[c, oh - pt + r, ow - pl + s]
//   grad bias    gb[k] += g
// with the input channels in the vector lanes: x and gx of one image channels-last and
// zero-padded (Hp, Wp, C) and w as (K, R, S, C), so a kernel row of taps is S * C contiguous
// values on both sides (S * C / VL vector multiply-adds). A quarter of the products (or
// fewer: the ReLU) at the cost of a read-modify-write per product.
//
// The sum over the batch (gw, gb) is taken per fixed chunk of images and the chunks added
// in order, as in conv2d_cpu.cpp: the result does not depend on the thread count. The
// products left out are exactly 0 * x (or 0 * w) only when x and w are finite, which
// sparse_backward_applies checks (an inf or NaN in x times a zero gradient is NaN in the
// dense backward and in torch's, so those inputs keep the dense path).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "conv2d.h"
#include "conv_relu_pool.h"
#include "cpu_gemm.h"

namespace dlsys {
namespace cpu {

// Whether every one of p[0..n) is finite: x - x is 0 for a finite x, NaN for inf and NaN.
template <typename T>
bool all_finite(const T *p, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += p[i] - p[i];
  return acc == T(0);
}

// Stride 1, dilation 1, one group, input channels a whole number of vectors, and w finite,
// and x too unless it is null (no grad weight asked for). One pass on the calling thread
// (an OpenMP region of its own cost more under load than the pass).
template <typename T>
bool sparse_backward_applies(const ConvDims &d, const T *x, const T *w) {
  if (d.N == 0 || d.G != 1 || d.stride_h != 1 || d.stride_w != 1 || d.dil_h != 1 ||
      d.dil_w != 1 || d.C % Vec<T>::VL != 0)
    return false;
  return all_finite(w, d.w_numel()) && (!x || all_finite(x, d.x_numel()));
}

// One nonzero of the conv output gradient: g at conv output (oh, ow) of its channel.
template <typename T>
struct Nonzero {
  int64_t at;  // x's (and gx's) channels-last offset of padded pixel (oh, ow), channel 0
  T g;
};

// gwk (R, S, C) += sum over the nonzeros of g * x's R x S window, held in R * SCV vector
// registers (SCV = S * C / VL) across all of them: one load and one multiply-add per
// product, no stores until the end.
template <typename T, int R, int SCV>
__attribute__((noinline)) void sparse_wgrad_channel(const Nonzero<T> *nz, int64_t count,
                                                    const T *xcl, int64_t row, T *gwk) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  V acc[R][SCV];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < SCV; ++t) acc[r][t] = vload(gwk + (r * SCV + t) * VL);
  for (int64_t i = 0; i < count; ++i) {
    const V gv = nz[i].g - V{};  // broadcast
    const T *xr = xcl + nz[i].at;
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < SCV; ++t) acc[r][t] += gv * vload(xr + r * row + t * VL);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < SCV; ++t) vstore(gwk + (r * SCV + t) * VL, acc[r][t]);
}

// The same for any R, S, C: a read-modify-write of gwk per product.
template <typename T>
void sparse_wgrad_channel_any(const Nonzero<T> *nz, int64_t count, const T *xcl, int64_t row,
                              int64_t R, int64_t SC, T *gwk) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  for (int64_t i = 0; i < count; ++i) {
    const V gv = nz[i].g - V{};
    for (int64_t r = 0; r < R; ++r) {
      const T *xr = xcl + nz[i].at + r * row;
      T *gr = gwk + r * SC;
      for (int64_t t = 0; t < SC; t += VL) vstore(gr + t, vload(gr + t) + gv * vload(xr + t));
    }
  }
}

template <typename T>
void conv_relu_pool_backward_sparse(const ConvDims &d, const PoolDims &p, const T *x,
                                    const T *w, const T *gout, const T *out,
                                    const uint8_t *arg, T *gx, T *gw, T *gb, int threads) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  const int64_t C = d.C, K = d.K, R = d.R, S = d.S, H = d.H, W = d.W;
  const int64_t Hp = H + d.pad_top + d.pad_bottom, Wp = W + d.pad_left + d.pad_right;
  const int64_t Q = p.QH * p.QW, SC = S * C, RSC = R * SC, plane = Hp * Wp * C;
  // wcl (K, R, S, C) = w (K, C, R, S) with the input channels innermost
  std::vector<T> wcl(static_cast<size_t>(gx ? K * RSC : 0));
  if (gx)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t q = 0; q < R * S; ++q)
          wcl[static_cast<size_t>(k * RSC + q * C + c)] = w[(k * C + c) * R * S + q];
  const int64_t nch = std::min<int64_t>(d.N, 16), wsz = gw ? K * RSC : 0;
  std::unique_ptr<T[]> pw(gw ? new T[static_cast<size_t>(nch * wsz)] : nullptr);
  std::vector<T> pb(gb ? static_cast<size_t>(nch * K) : 0);
  if (gw) std::fill(gw, gw + d.w_numel(), T(0));
  if (gb) std::fill(gb, gb + K, T(0));
#pragma omp parallel num_threads(threads) if (nch > 1)
  {
    Aligned<T> xcl(gw ? plane : 0), gxcl(gx ? plane : 0);
    std::vector<Nonzero<T>> nz;
    nz.reserve(static_cast<size_t>(Q));
    if (gw) std::fill(xcl.data(), xcl.data() + plane, T(0));  // the padding stays zero
    // dynamic: a thread that loses its core leaves its chunks to the other (each chunk's
    // sums are its own, so the result does not depend on who runs it)
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nch; ++ch) {
      T *pwc = gw ? pw.get() + ch * wsz : nullptr;
      T *pbc = gb ? pb.data() + ch * K : nullptr;
      if (pwc) std::fill(pwc, pwc + wsz, T(0));
      if (pbc) std::fill(pbc, pbc + K, T(0));
      for (int64_t n = ch * d.N / nch; n < (ch + 1) * d.N / nch; ++n) {
        const T *xn = x + n * C * H * W;
        if (gw)  // the image channels-last inside its zero border
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ih = 0; ih < H; ++ih) {
              T *dst = xcl.data() + ((ih + d.pad_top) * Wp + d.pad_left) * C + c;
              const T *src = xn + (c * H + ih) * W;
              for (int64_t iw = 0; iw < W; ++iw) dst[iw * C] = src[iw];
            }
        if (gx) std::fill(gxcl.data(), gxcl.data() + plane, T(0));
        for (int64_t k = 0; k < K; ++k) {
          const int64_t e0 = (n * K + k) * Q;
          nz.clear();
          for (int64_t e = 0; e < Q; ++e) {
            const T g = gout[e0 + e];
            if (out[e0 + e] <= T(0) || g == T(0)) continue;  // ReLU's gradient 0 (NaN passes)
            const int64_t a = arg[e0 + e], i = e / p.QW, j = e % p.QW;
            const int64_t oh = i * p.SH - p.PH + a / p.KW, ow = j * p.SW - p.PW + a % p.KW;
            nz.push_back({(oh * Wp + ow) * C, g});  // padded (oh, ow) = input (oh - pt, ow - pl)
            if (pbc) pbc[k] += g;
          }
          const Nonzero<T> *z = nz.data();
          const int64_t cnt = static_cast<int64_t>(nz.size());
          if (pwc) {
            T *gwk = pwc + k * RSC;
            const int64_t scv = SC / VL;
            if (R == 5 && scv == 5)
              sparse_wgrad_channel<T, 5, 5>(z, cnt, xcl.data(), Wp * C, gwk);
            else if (R == 3 && scv == 3)
              sparse_wgrad_channel<T, 3, 3>(z, cnt, xcl.data(), Wp * C, gwk);
            else
              sparse_wgrad_channel_any(z, cnt, xcl.data(), Wp * C, R, SC, gwk);
          }
          if (gx) {
            const T *wk = wcl.data() + k * RSC;
            for (int64_t m = 0; m < cnt; ++m) {
              const V gv = z[m].g - V{};  // broadcast
              for (int64_t r = 0; r < R; ++r) {
                const T *wr = wk + r * SC;
                T *gr = gxcl.data() + z[m].at + r * Wp * C;
                for (int64_t t = 0; t < SC; t += VL)
                  vstore(gr + t, vload(gr + t) + gv * vload(wr + t));
              }
            }
          }
        }
        if (gx) {  // back to (C, H, W), the border dropped
          T *gxn = gx + n * C * H * W;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ih = 0; ih < H; ++ih) {
              const T *src = gxcl.data() + ((ih + d.pad_top) * Wp + d.pad_left) * C + c;
              T *dst = gxn + (c * H + ih) * W;
              for (int64_t iw = 0; iw < W; ++iw) dst[iw] = src[iw * C];
            }
        }
      }
    }
    // the chunks' sums in chunk order
    if (gw) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t ch = 0; ch < nch; ++ch) {
          const T *src = pw.get() + ch * wsz + k * RSC;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t q = 0; q < R * S; ++q) gw[(k * C + c) * R * S + q] += src[q * C + c];
        }
    }
    if (gb) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t ch = 0; ch < nch; ++ch) gb[k] += pb[static_cast<size_t>(ch * K + k)];
    }
  }
}

}  // namespace cpu
}  // namespace dlsys
