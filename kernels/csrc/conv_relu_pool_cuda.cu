// CUDA fused conv + bias + ReLU + max-pool (float32).
//
// Forward: the conv (conv2d_forward_cuda) into a stream-ordered workspace, then one thread
// per pooled output walks its window (the selection rule of conv_relu_pool.h) and writes
// the pooled value and its one-byte argmax. Backward: one thread per conv output element
// gathers the pooled gradients whose argmax points at it, in row-major order of the pooled
// outputs (the order the CPU versions add them in; no atomics, deterministic), into a
// workspace, then conv2d_backward_cuda. Kernels run on the caller's stream; every launch is
// checked.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "conv_relu_pool.h"

namespace dlsys {

namespace {

void check(cudaError_t e, const char *where) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("conv2d_relu_pool CUDA ") + where + ": " +
                             cudaGetErrorString(e));
}

struct PD {
  int OH, OW, KH, KW, SH, SW, PH, PW, QH, QW;
};

PD to_pd(const ConvDims &d, const PoolDims &p) {
  return PD{static_cast<int>(d.OH), static_cast<int>(d.OW), static_cast<int>(p.KH),
            static_cast<int>(p.KW), static_cast<int>(p.SH), static_cast<int>(p.SW),
            static_cast<int>(p.PH), static_cast<int>(p.PW), static_cast<int>(p.QH),
            static_cast<int>(p.QW)};
}

unsigned grid_for(long long n) {
  long long b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65535LL * 32 ? b : 65535LL * 32);
}

// out, arg (planes, QH, QW) from z (planes, OH, OW); a grid-stride loop over pooled outputs.
__global__ void relu_pool_kernel(PD p, long long total, const float *__restrict z,
                                 float *__restrict out, unsigned char *__restrict arg) {
  for (long long e = blockIdx.x * 256LL + threadIdx.x; e < total; e += 256LL * gridDim.x) {
    const int j = static_cast<int>(e % p.QW), i = static_cast<int>((e / p.QW) % p.QH);
    const long long plane = e / (static_cast<long long>(p.QW) * p.QH);
    const float *zp = z + plane * p.OH * p.OW;
    const int h0 = i * p.SH - p.PH, w0 = j * p.SW - p.PW;
    const int ha = max(h0, 0), hb = min(h0 + p.KH, p.OH);
    const int wa = max(w0, 0), wb = min(w0 + p.KW, p.OW);
    float best = -INFINITY;
    int at = (ha - h0) * p.KW + (wa - w0);
    for (int h = ha; h < hb; ++h)
      for (int w = wa; w < wb; ++w) {
        const float v0 = zp[h * p.OW + w];
        const float v = v0 <= 0.f ? 0.f : v0;  // relu; NaN stays NaN
        if (v > best || isnan(v)) {
          best = v;
          at = (h - h0) * p.KW + (w - w0);
        }
      }
    out[e] = best;
    arg[e] = static_cast<unsigned char>(at);
  }
}

// gz (planes, OH, OW): for each conv output element, the sum of gout over the pooled
// outputs (i, j) whose window holds it, whose argmax is it and whose value passed the ReLU.
__global__ void unpool_kernel(PD p, long long total, const float *__restrict gout,
                              const float *__restrict out, const unsigned char *__restrict arg,
                              float *__restrict gz) {
  for (long long e = blockIdx.x * 256LL + threadIdx.x; e < total; e += 256LL * gridDim.x) {
    const int w = static_cast<int>(e % p.OW), h = static_cast<int>((e / p.OW) % p.OH);
    const long long plane = e / (static_cast<long long>(p.OW) * p.OH);
    const long long q0 = plane * p.QH * p.QW;
    // pooled rows i with i*SH - PH <= h < i*SH - PH + KH, likewise columns
    const int ia = max(0, (h + p.PH - p.KH + p.SH) / p.SH), ib = min(p.QH - 1, (h + p.PH) / p.SH);
    const int ja = max(0, (w + p.PW - p.KW + p.SW) / p.SW), jb = min(p.QW - 1, (w + p.PW) / p.SW);
    float g = 0.f;
    for (int i = ia; i <= ib; ++i)
      for (int j = ja; j <= jb; ++j) {
        const long long q = q0 + i * p.QW + j;
        const int a = (h - (i * p.SH - p.PH)) * p.KW + (w - (j * p.SW - p.PW));
        if (arg[q] == a && !(out[q] <= 0.f)) g += gout[q];
      }
    gz[e] = g;
  }
}

// A float workspace on the stream, freed when it goes out of scope (stream-ordered).
struct Workspace {
  float *p = nullptr;
  cudaStream_t st;
  Workspace(long long n, cudaStream_t s) : st(s) {
    if (n > 0) check(cudaMallocAsync(reinterpret_cast<void **>(&p), sizeof(float) * n, st),
                     "workspace allocation");
  }
  ~Workspace() {
    if (p) cudaFreeAsync(p, st);
  }
};

}  // namespace

void conv_relu_pool_forward_cuda(const ConvDims &d, const PoolDims &p, const float *x,
                                 const float *w, const float *b, float *out, uint8_t *arg,
                                 uintptr_t stream) {
  if (d.N == 0) return;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  Workspace z(d.y_numel(), st);
  conv2d_forward_cuda(d, x, w, b, z.p, stream);
  const long long total = crp_out_numel(d, p);
  relu_pool_kernel<<<grid_for(total), 256, 0, st>>>(to_pd(d, p), total, z.p, out, arg);
  check(cudaGetLastError(), "pool launch");
}

void conv_relu_pool_backward_cuda(const ConvDims &d, const PoolDims &p, const float *x,
                                  const float *w, const float *gout, const float *out,
                                  const uint8_t *arg, float *gx, float *gw, float *gb,
                                  uintptr_t stream) {
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  Workspace gz(d.y_numel(), st);
  if (d.N > 0) {
    const long long total = d.y_numel();
    unpool_kernel<<<grid_for(total), 256, 0, st>>>(to_pd(d, p), total, gout, out, arg, gz.p);
    check(cudaGetLastError(), "unpool launch");
  }
  conv2d_backward_cuda(d, x, w, gz.p, gx, gw, gb, stream);
}

}  // namespace dlsys
