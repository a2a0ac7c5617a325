// Optimised CPU 2-D convolution: im2col + a register-tiled GEMM, OpenMP over images.
//
// Per image n and group g (shapes per group, P = OH*OW, CRS = C/G*R*S):
//   forward      Y[Kg x P]       = W[Kg x CRS]    * Xcol[CRS x P]        (+ bias)
//   grad input   dXcol[CRS x P]  = W^T[CRS x Kg]  * dY[Kg x P],  then col2im adds into dX
//   grad weight  dW^T[CRS x Kg] += Xcol[CRS x P]  * dY^T[P x Kg]         (summed over n)
// Xcol (im2col) is built row by row: for each (c, r, s) and output row, a contiguous run of
// the input row (a copy when stride is 1) with zeros where the window leaves the image.
//
// The GEMM C[M x N] (+)= A[M x K] * B[K x N]: A is packed into panels of MR rows (kc x MR,
// contiguous), B is read in place in tiles of NR columns (a tail tile is copied, zero-padded).
// The micro-kernel keeps an MR x NR block of C in registers: with AVX-512 and float32,
// 8 x 32 = 16 zmm accumulators, and per step of k it loads two vectors of B and broadcasts
// 8 values of A (16 FMAs per 10 loads). It is plain C++ that GCC vectorises (#pragma omp simd).
// K is blocked by KC so that a B tile (KC x NR) stays in L1 while every A panel passes over it.
//
// Grad weight sums per-image products in a fixed number of chunks of the batch, added in
// order at the end, so the result does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d.h"

namespace dlsys {

namespace {

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
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  T acc[MR][NR];
  for (int i = 0; i < MR; ++i)
#pragma omp simd
    for (int j = 0; j < NR; ++j) acc[i][j] = T(0);
  for (int64_t p = 0; p < kc; ++p) {
    const T *b = B + p * ldb;
    const T *a = Ap + p * MR;
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i) {
      T *c = C + i * ldc;
      if (accumulate) {
#pragma omp simd
        for (int j = 0; j < NR; ++j) c[j] += acc[i][j];
      } else {
#pragma omp simd
        for (int j = 0; j < NR; ++j) c[j] = acc[i][j];
      }
    }
  } else {
    for (int64_t i = 0; i < mr; ++i) {
      T *c = C + i * ldc;
      for (int64_t j = 0; j < nr; ++j) c[j] = accumulate ? c[j] + acc[i][j] : acc[i][j];
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

}  // namespace

template <typename T>
void conv2d_forward_cpu(const ConvDims &d, const T *x, const T *w, const T *b, T *y,
                        int threads) {
  const int64_t G = d.G, Kg = d.Kg(), CRS = d.CRS(), P = d.P();
  if (d.N == 0) return;
  // Weights of every group packed once: group g's panels start at g * psz.
  const int64_t psz = packed_size<T>(Kg, CRS);
  std::vector<T> wp(static_cast<size_t>(G * psz));
  for (int64_t g = 0; g < G; ++g) pack_a(Kg, CRS, w + g * Kg * CRS, CRS, wp.data() + g * psz);
  const bool direct = d.R == 1 && d.S == 1 && d.stride_h == 1 && d.stride_w == 1 &&
                      d.pad_top == 0 && d.pad_left == 0 && d.pad_bottom == 0 &&
                      d.pad_right == 0;  // 1x1: Xcol is the input itself
  const int64_t tasks = d.N * G;
#pragma omp parallel num_threads(threads) if (tasks > 1)
  {
    std::vector<T> col(direct ? 0 : static_cast<size_t>(CRS * P));
    std::vector<T> btmp(static_cast<size_t>(kKC * Tile<T>::NR));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t n = task / G, g = task % G;
      const T *xg = x + (n * d.C + g * d.Cg()) * d.H * d.W;  // (Cg, H, W)
      T *yg = y + (n * d.K + g * Kg) * P;                     // (Kg, P)
      const T *B = xg;
      if (!direct) {
        im2col(d, xg, col.data());
        B = col.data();
      }
      if (b) {
        for (int64_t k = 0; k < Kg; ++k) std::fill(yg + k * P, yg + (k + 1) * P, b[g * Kg + k]);
      }
      gemm_packed<T>(Kg, P, CRS, wp.data() + g * psz, B, P, yg, P, b != nullptr, btmp.data());
    }
  }
}

template <typename T>
void conv2d_backward_cpu(const ConvDims &d, const T *x, const T *w, const T *gy, T *gx, T *gw,
                         T *gb, int threads) {
  const int64_t G = d.G, Kg = d.Kg(), Cg = d.Cg(), CRS = d.CRS(), P = d.P();
  const int64_t HW = d.H * d.W;
  if (gx) std::fill(gx, gx + d.x_numel(), T(0));
  if (gw) std::fill(gw, gw + d.w_numel(), T(0));
  if (gb) std::fill(gb, gb + d.K, T(0));
  if (d.N == 0 || (!gx && !gw && !gb)) return;

  // grad input: W^T of every group packed once (CRS x Kg per group).
  const int64_t psx = packed_size<T>(CRS, Kg);
  std::vector<T> wtp;
  if (gx) {
    wtp.resize(static_cast<size_t>(G * psx));
    std::vector<T> wt(static_cast<size_t>(CRS * Kg));
    for (int64_t g = 0; g < G; ++g) {
      const T *wg = w + g * Kg * CRS;  // (Kg, CRS)
      for (int64_t k = 0; k < Kg; ++k)
        for (int64_t q = 0; q < CRS; ++q) wt[static_cast<size_t>(q * Kg + k)] = wg[k * CRS + q];
      pack_a(CRS, Kg, wt.data(), Kg, wtp.data() + g * psx);
    }
  }

  // grad weight / bias: partial sums over fixed chunks of the batch.
  const int64_t nch = std::min<int64_t>(d.N, 16);
  const int64_t wsz = G * CRS * Kg;  // dW^T of every group, (G, CRS, Kg)
  std::vector<T> pw(gw ? static_cast<size_t>(nch * wsz) : 0);
  std::vector<T> pb(gb ? static_cast<size_t>(nch * d.K) : 0);

#pragma omp parallel num_threads(threads) if (nch > 1 || d.N > 1)
  {
    std::vector<T> col(static_cast<size_t>(CRS * P));
    std::vector<T> ap(gw ? static_cast<size_t>(packed_size<T>(CRS, P)) : 0);
    std::vector<T> gyt(gw ? static_cast<size_t>(P * Kg) : 0);
    std::vector<T> btmp(static_cast<size_t>(kKC * Tile<T>::NR));
    // grad input: one image per iteration.
    if (gx) {
#pragma omp for schedule(static)
      for (int64_t n = 0; n < d.N; ++n)
        for (int64_t g = 0; g < G; ++g) {
          const T *gyg = gy + (n * d.K + g * Kg) * P;  // (Kg, P)
          gemm_packed<T>(CRS, P, Kg, wtp.data() + g * psx, gyg, P, col.data(), P, false,
                         btmp.data());
          col2im_add(d, col.data(), gx + (n * d.C + g * Cg) * HW);
        }
    }
    if (gw || gb) {
#pragma omp for schedule(static)
      for (int64_t ch = 0; ch < nch; ++ch) {
        const int64_t n0 = ch * d.N / nch, n1 = (ch + 1) * d.N / nch;
        T *pwc = gw ? pw.data() + ch * wsz : nullptr;
        T *pbc = gb ? pb.data() + ch * d.K : nullptr;
        if (pbc) std::fill(pbc, pbc + d.K, T(0));
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t g = 0; g < G; ++g) {
            const T *gyg = gy + (n * d.K + g * Kg) * P;  // (Kg, P)
            if (pbc)
              for (int64_t k = 0; k < Kg; ++k) {
                T s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t p = 0; p < P; ++p) s += gyg[k * P + p];
                pbc[g * Kg + k] += s;
              }
            if (!pwc) continue;
            im2col(d, x + (n * d.C + g * Cg) * HW, col.data());
            pack_a(CRS, P, col.data(), P, ap.data());
            for (int64_t k = 0; k < Kg; ++k)
              for (int64_t p = 0; p < P; ++p) gyt[static_cast<size_t>(p * Kg + k)] = gyg[k * P + p];
            gemm_packed<T>(CRS, Kg, P, ap.data(), gyt.data(), Kg, pwc + g * CRS * Kg, Kg,
                           n > n0, btmp.data());
          }
      }
    }
  }
  // Sum the chunks in order; dW^T (CRS x Kg) -> dW (Kg x CRS).
  if (gb)
    for (int64_t ch = 0; ch < nch; ++ch)
      for (int64_t k = 0; k < d.K; ++k) gb[k] += pb[static_cast<size_t>(ch * d.K + k)];
  if (gw)
    for (int64_t ch = 0; ch < nch; ++ch)
      for (int64_t g = 0; g < G; ++g) {
        const T *src = pw.data() + ch * wsz + g * CRS * Kg;
        T *dst = gw + g * Kg * CRS;
        for (int64_t q = 0; q < CRS; ++q)
          for (int64_t k = 0; k < Kg; ++k) dst[k * CRS + q] += src[q * Kg + k];
      }
}

template void conv2d_forward_cpu<float>(const ConvDims &, const float *, const float *,
                                        const float *, float *, int);
template void conv2d_forward_cpu<double>(const ConvDims &, const double *, const double *,
                                         const double *, double *, int);
template void conv2d_backward_cpu<float>(const ConvDims &, const float *, const float *,
                                         const float *, float *, float *, float *, int);
template void conv2d_backward_cpu<double>(const ConvDims &, const double *, const double *,
                                          const double *, double *, double *, double *, int);

}  // namespace dlsys
