// Reference 2-D convolution: the definition in conv2d.h written out as loops, nothing clever.
// Every faster version (conv2d_cpu.cpp, conv2d_cuda.cu) is tested against this one.
#include <stdexcept>
#include <string>

#include "conv2d.h"

namespace dlsys {

namespace {

void need(bool ok, const std::string &what) {
  if (!ok) throw std::invalid_argument("conv2d: " + what);
}

}  // namespace

ConvDims conv_dims_from(const std::vector<int64_t> &v) {
  need(v.size() == 18, "expected 18 dims, got " + std::to_string(v.size()));
  ConvDims d{v[0],  v[1],  v[2],  v[3],  v[4],  v[5],  v[6],  v[7],  v[8],
             v[9],  v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]};
  need(d.N >= 0, "N must be >= 0, got " + std::to_string(d.N));
  need(d.C >= 1 && d.H >= 1 && d.W >= 1, "input C, H, W must be >= 1");
  need(d.K >= 1 && d.R >= 1 && d.S >= 1, "weight K, R, S must be >= 1");
  need(d.G >= 1 && d.C % d.G == 0 && d.K % d.G == 0,
       "groups=" + std::to_string(d.G) + " must divide C=" + std::to_string(d.C) +
           " and K=" + std::to_string(d.K));
  need(d.stride_h >= 1 && d.stride_w >= 1, "stride must be >= 1");
  need(d.dil_h >= 1 && d.dil_w >= 1, "dilation must be >= 1");
  need(d.pad_top >= 0 && d.pad_bottom >= 0 && d.pad_left >= 0 && d.pad_right >= 0,
       "padding must be >= 0");
  const int64_t eh = d.H + d.pad_top + d.pad_bottom - d.dil_h * (d.R - 1) - 1;
  const int64_t ew = d.W + d.pad_left + d.pad_right - d.dil_w * (d.S - 1) - 1;
  need(eh >= 0 && ew >= 0, "kernel larger than the padded input");
  need(d.OH == eh / d.stride_h + 1 && d.OW == ew / d.stride_w + 1,
       "output size does not match input, kernel, stride, padding and dilation");
  // Index arithmetic below is int64; this keeps products of sizes far from overflow.
  need(d.x_numel() < (int64_t{1} << 40) && d.y_numel() < (int64_t{1} << 40), "tensor too large");
  return d;
}

template <typename T>
void conv2d_forward_ref(const ConvDims &d, const T *x, const T *w, const T *b, T *y) {
  const int64_t Cg = d.Cg(), Kg = d.Kg();
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t g = k / Kg;
      for (int64_t oh = 0; oh < d.OH; ++oh)
        for (int64_t ow = 0; ow < d.OW; ++ow) {
          T acc = b ? b[k] : T(0);
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < d.R; ++r) {
              const int64_t ih = oh * d.stride_h - d.pad_top + r * d.dil_h;
              if (ih < 0 || ih >= d.H) continue;
              for (int64_t s = 0; s < d.S; ++s) {
                const int64_t iw = ow * d.stride_w - d.pad_left + s * d.dil_w;
                if (iw < 0 || iw >= d.W) continue;
                acc += w[((k * Cg + c) * d.R + r) * d.S + s] *
                       x[((n * d.C + g * Cg + c) * d.H + ih) * d.W + iw];
              }
            }
          y[((n * d.K + k) * d.OH + oh) * d.OW + ow] = acc;
        }
    }
}

// gx[n,c,ih,iw] = sum over (k, r, s, oh, ow) that read x[n,c,ih,iw] of w[k,c,r,s] * gy[n,k,oh,ow]
// gw[k,c,r,s]   = sum over (n, oh, ow) of gy[n,k,oh,ow] * x[n,c,ih,iw]
// gb[k]         = sum over (n, oh, ow) of gy[n,k,oh,ow]
template <typename T>
void conv2d_backward_ref(const ConvDims &d, const T *x, const T *w, const T *gy, T *gx, T *gw,
                         T *gb) {
  const int64_t Cg = d.Cg(), Kg = d.Kg();
  if (gx)
    for (int64_t i = 0; i < d.x_numel(); ++i) gx[i] = T(0);
  if (gw)
    for (int64_t i = 0; i < d.w_numel(); ++i) gw[i] = T(0);
  if (gb)
    for (int64_t k = 0; k < d.K; ++k) gb[k] = T(0);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t g = k / Kg;
      for (int64_t oh = 0; oh < d.OH; ++oh)
        for (int64_t ow = 0; ow < d.OW; ++ow) {
          const T go = gy[((n * d.K + k) * d.OH + oh) * d.OW + ow];
          if (gb) gb[k] += go;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < d.R; ++r) {
              const int64_t ih = oh * d.stride_h - d.pad_top + r * d.dil_h;
              if (ih < 0 || ih >= d.H) continue;
              for (int64_t s = 0; s < d.S; ++s) {
                const int64_t iw = ow * d.stride_w - d.pad_left + s * d.dil_w;
                if (iw < 0 || iw >= d.W) continue;
                const int64_t xi = ((n * d.C + g * Cg + c) * d.H + ih) * d.W + iw;
                const int64_t wi = ((k * Cg + c) * d.R + r) * d.S + s;
                if (gx) gx[xi] += w[wi] * go;
                if (gw) gw[wi] += x[xi] * go;
              }
            }
        }
    }
}

template void conv2d_forward_ref<float>(const ConvDims &, const float *, const float *,
                                        const float *, float *);
template void conv2d_forward_ref<double>(const ConvDims &, const double *, const double *,
                                         const double *, double *);
template void conv2d_backward_ref<float>(const ConvDims &, const float *, const float *,
                                         const float *, float *, float *, float *);
template void conv2d_backward_ref<double>(const ConvDims &, const double *, const double *,
                                          const double *, double *, double *, double *);

}  // namespace dlsys
