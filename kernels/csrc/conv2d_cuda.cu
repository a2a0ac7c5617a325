// CUDA 2-D convolution (float32): tiled implicit GEMM with shared memory.
//
// All three products are GEMMs whose operands are gathered on the fly (never materialised):
//   forward      y[n, k, p]   = sum_{q=(c,r,s)}  w[k, q] * xcol[q, (n, p)]           M=Kg  N=N*P  K=CRS
//   grad input   gx[n, c, h, w] = sum_{(k,r,s)}  w[k, c, r, s] * gy[n, k, oh, ow]
//                (oh*stride = h + pad - r*dil, only when divisible and in range)     M=Cg  N=N*H*W K=Kg*R*S
//   grad weight  gw[k, q]     = sum_{(n, p)}     gy[n, k, p] * xcol[q, (n, p)]        M=Kg  N=CRS  K=N*P
// One block computes a 64 x 64 tile of the output with 256 threads (each a 4 x 4 register
// tile); per step it stages a 16-deep slice of A and B in shared memory. grad weight splits
// its long K (= N*P) over blocks into a workspace and sums the splits in a fixed order
// (deterministic, no atomics). grad bias: one block per channel, a tree reduction.
// Kernels run on the caller's stream; every launch is checked.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "bind_ops.h"
#include "conv2d.h"

namespace dlsys {

namespace {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;  // 16 x 16 threads, 4 x 4 each

void check(cudaError_t e, const char *where) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("conv2d CUDA ") + where + ": " + cudaGetErrorString(e));
}

void check_launch(const char *where) { check(cudaGetLastError(), where); }

// Plain-old-data copy of ConvDims for kernel arguments.
struct D {
  int N, C, H, W, K, R, S, OH, OW, sh, sw, ph, pw, dh, dw, G, Cg, Kg;
};

D to_d(const ConvDims &d) {
  return D{static_cast<int>(d.N),        static_cast<int>(d.C),        static_cast<int>(d.H),
           static_cast<int>(d.W),        static_cast<int>(d.K),        static_cast<int>(d.R),
           static_cast<int>(d.S),        static_cast<int>(d.OH),       static_cast<int>(d.OW),
           static_cast<int>(d.stride_h), static_cast<int>(d.stride_w), static_cast<int>(d.pad_top),
           static_cast<int>(d.pad_left), static_cast<int>(d.dil_h),    static_cast<int>(d.dil_w),
           static_cast<int>(d.G),        static_cast<int>(d.Cg()),     static_cast<int>(d.Kg())};
}

// x value at im2col row q = (c, r, s) and column col = (n, p) of group g; 0 in the padding.
__device__ __forceinline__ float xcol_at(const float *__restrict x, const D &d, int g, int q,
                                         long long col) {
  const int P = d.OH * d.OW;
  const int n = static_cast<int>(col / P), p = static_cast<int>(col % P);
  const int oh = p / d.OW, ow = p % d.OW;
  const int s = q % d.S, r = (q / d.S) % d.R, c = q / (d.S * d.R);
  const int ih = oh * d.sh - d.ph + r * d.dh, iw = ow * d.sw - d.pw + s * d.dw;
  if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) return 0.f;
  return x[((static_cast<long long>(n) * d.C + g * d.Cg + c) * d.H + ih) * d.W + iw];
}

// The shared 64 x 64 x 16 tile loop: A(m, kk) and B(kk, col) are functors.
template <typename LoadA, typename LoadB>
__device__ __forceinline__ void tile_gemm(int M, long long Ncols, long long K0, long long K1,
                                          int m0, long long n0, LoadA loadA, LoadB loadB,
                                          float (&acc)[TM][TN]) {
  __shared__ float As[BK][BM];
  __shared__ float Bs[BK][BN + 4];
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (long long k0 = K0; k0 < K1; k0 += BK) {
    for (int e = tid; e < BM * BK; e += 256) {
      const int m = e / BK, kk = e % BK;
      const long long k = k0 + kk;
      As[kk][m] = (m0 + m < M && k < K1) ? loadA(m0 + m, k) : 0.f;
    }
    for (int e = tid; e < BK * BN; e += 256) {
      const int kk = e / BN, j = e % BN;
      const long long k = k0 + kk;
      Bs[kk][j] = (n0 + j < Ncols && k < K1) ? loadB(k, n0 + j) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[kk][threadIdx.y * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[kk][threadIdx.x * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

__global__ void fwd_kernel(D d, const float *__restrict x, const float *__restrict w,
                           const float *__restrict b, float *__restrict y) {
  const int g = blockIdx.z;
  const int P = d.OH * d.OW;
  const int CRS = d.Cg * d.R * d.S;
  const long long Ncols = static_cast<long long>(d.N) * P;
  const int m0 = blockIdx.y * BM;
  const long long n0 = static_cast<long long>(blockIdx.x) * BN;
  const float *wg = w + static_cast<long long>(g) * d.Kg * CRS;  // (Kg, CRS)
  float acc[TM][TN] = {};
  tile_gemm(
      d.Kg, Ncols, 0, CRS, m0, n0,
      [&](int m, long long k) { return wg[static_cast<long long>(m) * CRS + k]; },
      [&](long long k, long long col) { return xcol_at(x, d, g, static_cast<int>(k), col); },
      acc);
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + threadIdx.y * TM + i;
    if (m >= d.Kg) continue;
    const int k = g * d.Kg + m;
    for (int j = 0; j < TN; ++j) {
      const long long col = n0 + threadIdx.x * TN + j;
      if (col >= Ncols) continue;
      const long long n = col / P, p = col % P;
      y[(n * d.K + k) * P + p] = acc[i][j] + (b ? b[k] : 0.f);
    }
  }
}

__global__ void dgrad_kernel(D d, const float *__restrict w, const float *__restrict gy,
                             float *__restrict gx) {
  const int g = blockIdx.z;
  const int HW = d.H * d.W, RS = d.R * d.S, CRS = d.Cg * RS;
  const long long Ncols = static_cast<long long>(d.N) * HW;
  const int m0 = blockIdx.y * BM;
  const long long n0 = static_cast<long long>(blockIdx.x) * BN;
  float acc[TM][TN] = {};
  tile_gemm(
      d.Cg, Ncols, 0, static_cast<long long>(d.Kg) * RS, m0, n0,
      [&](int c, long long kk) {  // kk = (k, r, s): w[g*Kg + k, c, r, s]
        const int k = static_cast<int>(kk / RS), rs = static_cast<int>(kk % RS);
        return w[(static_cast<long long>(g) * d.Kg + k) * CRS + c * RS + rs];
      },
      [&](long long kk, long long col) {  // gy[n, g*Kg + k, oh, ow] reading x[n, ., h, w]
        const int k = static_cast<int>(kk / RS), rs = static_cast<int>(kk % RS);
        const int r = rs / d.S, s = rs % d.S;
        const long long n = col / HW;
        const int hw = static_cast<int>(col % HW), h = hw / d.W, wi = hw % d.W;
        const int th = h + d.ph - r * d.dh, tw = wi + d.pw - s * d.dw;
        if (th < 0 || tw < 0 || th % d.sh != 0 || tw % d.sw != 0) return 0.f;
        const int oh = th / d.sh, ow = tw / d.sw;
        if (oh >= d.OH || ow >= d.OW) return 0.f;
        return gy[((n * d.K + g * d.Kg + k) * d.OH + oh) * d.OW + ow];
      },
      acc);
  for (int i = 0; i < TM; ++i) {
    const int c = m0 + threadIdx.y * TM + i;
    if (c >= d.Cg) continue;
    for (int j = 0; j < TN; ++j) {
      const long long col = n0 + threadIdx.x * TN + j;
      if (col >= Ncols) continue;
      const long long n = col / HW, hw = col % HW;
      gx[(n * d.C + g * d.Cg + c) * HW + hw] = acc[i][j];
    }
  }
}

// grid.z = G * splits; split `sp` of group g sums K range [sp*chunk, (sp+1)*chunk) into
// ws[(sp * G + g) * Kg * CRS + ...].
__global__ void wgrad_kernel(D d, const float *__restrict x, const float *__restrict gy,
                             float *__restrict ws, int splits, long long chunk) {
  const int g = blockIdx.z % d.G, sp = blockIdx.z / d.G;
  const int P = d.OH * d.OW, CRS = d.Cg * d.R * d.S;
  const long long Ktot = static_cast<long long>(d.N) * P;
  const long long K0 = sp * chunk, K1 = K0 + chunk < Ktot ? K0 + chunk : Ktot;
  const int m0 = blockIdx.y * BM;
  const long long n0 = static_cast<long long>(blockIdx.x) * BN;
  float acc[TM][TN] = {};
  if (K0 < K1)
    tile_gemm(
        d.Kg, CRS, K0, K1, m0, n0,
        [&](int m, long long col) {  // gy[n, g*Kg + m, p], col = (n, p)
          const long long n = col / P, p = col % P;
          return gy[(n * d.K + g * d.Kg + m) * P + p];
        },
        [&](long long col, long long q) { return xcol_at(x, d, g, static_cast<int>(q), col); },
        acc);
  float *out = ws + (static_cast<long long>(sp) * d.G + g) * d.Kg * CRS;
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + threadIdx.y * TM + i;
    if (m >= d.Kg) continue;
    for (int j = 0; j < TN; ++j) {
      const long long q = n0 + threadIdx.x * TN + j;
      if (q < CRS) out[static_cast<long long>(m) * CRS + q] = acc[i][j];
    }
  }
  (void)splits;
}

// gw[e] = sum over splits, in order, of ws[sp * total + e].
__global__ void sum_splits_kernel(const float *__restrict ws, float *__restrict gw,
                                  long long total, int splits) {
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int sp = 0; sp < splits; ++sp) s += ws[sp * total + e];
    gw[e] = s;
  }
}

// gb[k] = sum_{n, p} gy[n, k, p]: one block of 256 threads per k, fixed-order tree.
__global__ void bgrad_kernel(D d, const float *__restrict gy, float *__restrict gb) {
  __shared__ float sh[256];
  const int k = blockIdx.x, P = d.OH * d.OW;
  const long long total = static_cast<long long>(d.N) * P;
  float s = 0.f;
  for (long long e = threadIdx.x; e < total; e += 256) {
    const long long n = e / P, p = e % P;
    s += gy[(n * d.K + k) * P + p];
  }
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int off = 128; off > 0; off >>= 1) {
    if (threadIdx.x < off) sh[threadIdx.x] += sh[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) gb[k] = sh[0];
}

unsigned blocks(long long n, int per) { return static_cast<unsigned>((n + per - 1) / per); }

void check_grid(unsigned gx, unsigned gy, unsigned gz) {
  if (gx == 0 || gx > 2147483647u || gy > 65535u || gz > 65535u)
    throw std::invalid_argument("conv2d CUDA: problem too large for one launch grid");
}

}  // namespace

void cuda_set_device(int device) {
  if (device >= 0) check(cudaSetDevice(device), "cudaSetDevice");
}

void conv2d_forward_cuda(const ConvDims &dims, const float *x, const float *w, const float *b,
                         float *y, uintptr_t stream) {
  if (dims.N == 0) return;
  const D d = to_d(dims);
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const dim3 grid(blocks(static_cast<long long>(d.N) * d.OH * d.OW, BN), blocks(d.Kg, BM), d.G);
  check_grid(grid.x, grid.y, grid.z);
  fwd_kernel<<<grid, dim3(16, 16), 0, st>>>(d, x, w, b, y);
  check_launch("forward launch");
}

void conv2d_backward_cuda(const ConvDims &dims, const float *x, const float *w, const float *gy,
                          float *gx, float *gw, float *gb, uintptr_t stream) {
  const D d = to_d(dims);
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (dims.N == 0) {
    if (gw) check(cudaMemsetAsync(gw, 0, sizeof(float) * dims.w_numel(), st), "memset");
    if (gb) check(cudaMemsetAsync(gb, 0, sizeof(float) * dims.K, st), "memset");
    return;
  }
  if (gx) {
    const dim3 grid(blocks(static_cast<long long>(d.N) * d.H * d.W, BN), blocks(d.Cg, BM), d.G);
    check_grid(grid.x, grid.y, grid.z);
    dgrad_kernel<<<grid, dim3(16, 16), 0, st>>>(d, w, gy, gx);
    check_launch("grad input launch");
  }
  if (gw) {
    const long long CRS = static_cast<long long>(d.Cg) * d.R * d.S;
    const long long Ktot = static_cast<long long>(d.N) * d.OH * d.OW;
    // Enough splits to give every SM a few blocks; each split at least 1024 deep.
    const long long tiles = static_cast<long long>(blocks(CRS, BN)) * blocks(d.Kg, BM) * d.G;
    long long splits = (512 + tiles - 1) / tiles;
    splits = splits < (Ktot + 1023) / 1024 ? splits : (Ktot + 1023) / 1024;
    if (splits < 1) splits = 1;
    if (splits * d.G > 65535) splits = 65535 / d.G;
    const long long chunk = ((Ktot + splits - 1) / splits + BK - 1) / BK * BK;
    const long long total = dims.w_numel();
    float *ws = nullptr;
    check(cudaMallocAsync(reinterpret_cast<void **>(&ws), sizeof(float) * total * splits, st),
          "workspace allocation");
    const dim3 grid(blocks(CRS, BN), blocks(d.Kg, BM), static_cast<unsigned>(d.G * splits));
    check_grid(grid.x, grid.y, grid.z);
    wgrad_kernel<<<grid, dim3(16, 16), 0, st>>>(d, x, gy, ws, static_cast<int>(splits), chunk);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) {
      sum_splits_kernel<<<blocks(total, 256) < 4096 ? blocks(total, 256) : 4096, 256, 0, st>>>(
          ws, gw, total, static_cast<int>(splits));
      e = cudaGetLastError();
    }
    cudaFreeAsync(ws, st);
    check(e, "grad weight launch");
  }
  if (gb) {
    bgrad_kernel<<<static_cast<unsigned>(d.K), 256, 0, st>>>(d, gy, gb);
    check_launch("grad bias launch");
  }
}

}  // namespace dlsys
