// CUDA fused cross-entropy with flooding (float32); formulas in flood_ce.h.
//
// lse: one warp per row when C <= 1024 (8 rows per 256-thread block), else one 256-thread
// block per row. Each thread keeps an online-softmax pair (running max m, sum s of exp(x - m))
// over its strided elements, so a row is read once; pairs are merged by warp shuffles (and
// through shared memory across warps). A NaN in the row makes s NaN and so the loss NaN.
// reduce: one block sums the row losses in a fixed order (deterministic) and applies flooding.
// backward: one thread per element, dx = s * (exp((x - m) - log s) - onehot).
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "flood_ce.h"

namespace dlsys {

namespace {

void check(cudaError_t e, const char *where) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("flooding_cross_entropy CUDA ") + where + ": " +
                             cudaGetErrorString(e));
}

struct MS {
  float m, s;
};

__device__ __forceinline__ MS ms_add(MS a, float v) {
  if (v > a.m) {  // new max (never taken by NaN: NaN goes to the else branch and poisons s)
    a.s = a.s * __expf(a.m - v) + 1.f;
    a.m = v;
  } else {
    a.s += (v == -INFINITY) ? 0.f : __expf(v - a.m);
  }
  return a;
}

__device__ __forceinline__ MS ms_merge(MS a, MS b) {
  const float m = fmaxf(a.m, b.m);
  const float fa = a.m == m ? 1.f : __expf(a.m - m);
  const float fb = b.m == m ? 1.f : __expf(b.m - m);
  return MS{m, a.s * fa + b.s * fb};
}

__device__ __forceinline__ MS warp_merge(MS v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    MS o{__shfl_xor_sync(0xffffffffu, v.m, off), __shfl_xor_sync(0xffffffffu, v.s, off)};
    v = ms_merge(v, o);
  }
  return v;
}

// rows[2i] = m, rows[2i+1] = log s. A +inf logit makes torch's log-softmax NaN (inf - inf);
// match it.
__device__ __forceinline__ void store_row(MS v, float *__restrict rows, long long row) {
  rows[2 * row] = v.m;
  rows[2 * row + 1] = (isinf(v.m) && v.m > 0) ? NAN : logf(v.s);
}

// One warp per row (C <= 1024): blockDim 256 = 8 rows.
__global__ void lse_warp_kernel(const float *__restrict x, float *__restrict rows, long long N,
                                int C) {
  const long long row = blockIdx.x * 8LL + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *xr = x + row * C;
  MS v{-INFINITY, 0.f};
  for (int j = lane; j < C; j += 32) v = ms_add(v, xr[j]);
  v = warp_merge(v);
  if (lane == 0) store_row(v, rows, row);
}

// One 256-thread block per row (C > 1024).
__global__ void lse_block_kernel(const float *__restrict x, float *__restrict rows, int C) {
  __shared__ float sm[8], ss[8];
  const long long row = blockIdx.x;
  const float *xr = x + row * C;
  MS v{-INFINITY, 0.f};
  for (int j = threadIdx.x; j < C; j += 256) v = ms_add(v, xr[j]);
  v = warp_merge(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sm[warp] = v.m;
    ss[warp] = v.s;
  }
  __syncthreads();
  if (warp == 0) {
    MS w = lane < 8 ? MS{sm[lane], ss[lane]} : MS{-INFINITY, 0.f};
    w = warp_merge(w);
    if (lane == 0) store_row(w, rows, row);
  }
}

// One block of 1024 threads: per-row losses (written for 'none'), their sum in a fixed
// order, the count of rows not ignored, and the flooded loss.
__global__ void reduce_kernel(const float *__restrict x, const int64_t *__restrict t,
                              const float *__restrict rows, float *__restrict loss,
                              float *__restrict stats, long long N, int C, double b,
                              int reduction, long long ignore_index) {
  __shared__ double sd[1024];
  __shared__ long long sc[1024];
  double acc = 0.0;
  long long cnt = 0;
  for (long long i = threadIdx.x; i < N; i += 1024) {
    float li = 0.f;
    if (t[i] != ignore_index) {
      li = (rows[2 * i] - x[i * C + t[i]]) + rows[2 * i + 1];
      ++cnt;
    }
    if (reduction == 0) loss[i] = li;
    acc += li;
  }
  sd[threadIdx.x] = acc;
  sc[threadIdx.x] = cnt;
  __syncthreads();
  for (int off = 512; off > 0; off >>= 1) {
    if (threadIdx.x < off) {
      sd[threadIdx.x] += sd[threadIdx.x + off];
      sc[threadIdx.x] += sc[threadIdx.x + off];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double R = reduction == 1 ? sd[0] / static_cast<double>(sc[0]) : sd[0];
    stats[0] = static_cast<float>(R);
    stats[1] = static_cast<float>(sc[0]);
    if (reduction != 0) loss[0] = b == 0.0 ? static_cast<float>(R) : static_cast<float>(fabs(R - b) + b);
  }
}

__global__ void backward_kernel(const float *__restrict gloss, const float *__restrict x,
                                const int64_t *__restrict t, const float *__restrict rows,
                                const float *__restrict stats, float *__restrict gx, long long N,
                                int C, double b, int reduction, long long ignore_index) {
  float common = 0.f;
  if (reduction != 0) {
    double sg = 1.0;
    if (b != 0.0) {
      const double z = static_cast<double>(stats[0]) - b;
      sg = z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0);
    }
    double scale = static_cast<double>(gloss[0]) * sg;
    if (reduction == 1) scale /= static_cast<double>(stats[1]);
    common = static_cast<float>(scale);
  }
  const long long total = N * C;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long i = e / C;
    const int j = static_cast<int>(e % C);
    const int64_t ti = t[i];
    float g = 0.f;
    if (ti != ignore_index) {
      const float s = reduction == 0 ? gloss[i] : common;
      g = s * (__expf((x[e] - rows[2 * i]) - rows[2 * i + 1]) - (j == ti ? 1.f : 0.f));
    }
    gx[e] = g;
  }
}

}  // namespace

void flood_ce_forward_cuda(const FloodDims &d, const float *x, const int64_t *t, float *loss,
                           float *rows, float *stats, uintptr_t stream) {
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const int C = static_cast<int>(d.C);
  if (d.N > 0) {
    if (C <= 1024)
      lse_warp_kernel<<<static_cast<unsigned>((d.N + 7) / 8), 256, 0, st>>>(x, rows, d.N, C);
    else
      lse_block_kernel<<<static_cast<unsigned>(d.N), 256, 0, st>>>(x, rows, C);
    check(cudaGetLastError(), "lse launch");
  }
  reduce_kernel<<<1, 1024, 0, st>>>(x, t, rows, loss, stats, d.N, C, d.b,
                                    static_cast<int>(d.reduction), d.ignore_index);
  check(cudaGetLastError(), "reduce launch");
}

void flood_ce_backward_cuda(const FloodDims &d, const float *gloss, const float *x,
                            const int64_t *t, const float *rows, const float *stats, float *gx,
                            uintptr_t stream) {
  if (d.N == 0) return;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const long long total = d.N * d.C;
  long long nb = (total + 255) / 256;
  if (nb > 65536) nb = 65536;
  backward_kernel<<<static_cast<unsigned>(nb), 256, 0, st>>>(
      gloss, x, t, rows, stats, gx, d.N, static_cast<int>(d.C), d.b,
      static_cast<int>(d.reduction), d.ignore_index);
  check(cudaGetLastError(), "backward launch");
}

}  // namespace dlsys
