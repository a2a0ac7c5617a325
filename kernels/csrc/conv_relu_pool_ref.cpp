// Reference fused conv + bias + ReLU + max-pool: the definition in conv_relu_pool.h written
// out over the reference conv (conv2d_ref.cpp) and the plane functions of the header. It
// stores the whole conv output, which is exactly what the fused versions avoid.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "conv_relu_pool.h"

namespace dlsys {

namespace {

void need(bool ok, const std::string &what) {
  if (!ok) throw std::invalid_argument("conv2d_relu_pool: " + what);
}

}  // namespace

PoolDims pool_dims_from(const ConvDims &d, const std::vector<int64_t> &v) {
  need(v.size() == 8, "expected 8 pool dims, got " + std::to_string(v.size()));
  PoolDims p{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
  need(p.KH >= 1 && p.KW >= 1, "pool window must be >= 1, got " + std::to_string(p.KH) + "x" +
                                   std::to_string(p.KW));
  need(p.window() <= 256, "pool window must have at most 256 elements (one-byte argmax), got " +
                              std::to_string(p.window()));
  need(p.SH >= 1 && p.SW >= 1, "pool stride must be >= 1");
  need(p.PH >= 0 && p.PW >= 0 && 2 * p.PH <= p.KH && 2 * p.PW <= p.KW,
       "pool padding must be >= 0 and at most half the window");
  need(d.OH + 2 * p.PH >= p.KH && d.OW + 2 * p.PW >= p.KW,
       "pool window larger than the padded conv output " + std::to_string(d.OH) + "x" +
           std::to_string(d.OW));
  need(p.QH == (d.OH + 2 * p.PH - p.KH) / p.SH + 1 && p.QW == (d.OW + 2 * p.PW - p.KW) / p.SW + 1,
       "pooled size does not match the conv output, window, stride and padding");
  return p;
}

template <typename T>
void conv_relu_pool_forward_ref(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                const T *b, T *out, uint8_t *arg) {
  std::vector<T> z(static_cast<size_t>(d.y_numel()));
  conv2d_forward_ref<T>(d, x, w, b, z.data());
  const int64_t P = d.OH * d.OW, Q = p.QH * p.QW;
  for (int64_t nk = 0; nk < d.N * d.K; ++nk)
    relu_pool_plane(p, d.OH, d.OW, z.data() + nk * P, out + nk * Q, arg + nk * Q);
}

template <typename T>
void conv_relu_pool_backward_ref(const ConvDims &d, const PoolDims &p, const T *x, const T *w,
                                 const T *gout, const T *out, const uint8_t *arg, T *gx, T *gw,
                                 T *gb) {
  std::vector<T> gz(static_cast<size_t>(d.y_numel()), T(0));
  const int64_t P = d.OH * d.OW, Q = p.QH * p.QW;
  for (int64_t nk = 0; nk < d.N * d.K; ++nk)
    unpool_plane(p, d.OW, gout + nk * Q, out + nk * Q, arg + nk * Q, gz.data() + nk * P);
  conv2d_backward_ref<T>(d, x, w, gz.data(), gx, gw, gb);
}

template void conv_relu_pool_forward_ref<float>(const ConvDims &, const PoolDims &,
                                                const float *, const float *, const float *,
                                                float *, uint8_t *);
template void conv_relu_pool_forward_ref<double>(const ConvDims &, const PoolDims &,
                                                 const double *, const double *, const double *,
                                                 double *, uint8_t *);
template void conv_relu_pool_backward_ref<float>(const ConvDims &, const PoolDims &,
                                                 const float *, const float *, const float *,
                                                 const float *, const uint8_t *, float *, float *,
                                                 float *);
template void conv_relu_pool_backward_ref<double>(const ConvDims &, const PoolDims &,
                                                  const double *, const double *, const double *,
                                                  const double *, const uint8_t *, double *,
                                                  double *, double *);

}  // namespace dlsys
