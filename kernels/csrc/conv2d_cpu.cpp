// Optimised CPU 2-D convolution: implicit GEMMs over a flat pixel layout, OpenMP.
//
// Shapes per image and group (P = OH*OW output pixels, CRS = C/G*R*S, q = (c, r, s)):
//   forward      Y[Kg x P]   = W[Kg x CRS] * Xcol[CRS x P]   (+ bias)
//   grad input   of a stride-1 conv: the forward of grad_out with the flipped, transposed
//                weights; otherwise dXcol = W^T * dY (GEMM) and col2im
//   grad weight  dW[Kg x CRS] = sum over images of dY[Kg x P] * Xcol^T[P x CRS]
//
// Xcol is never built when stride_h is 1: U, S shifted copies of the zero-padded input, makes
// every Xcol row q a contiguous run U[off[q] .. off[q] + P) (see "shifted copies" below), so
// vector lanes run over the flat output pixels and a 13x13 or 14x14 map fills 169/176 or
// 196/208 lanes. The kernels (AVX-512 float32 sizes; plain C++ with GCC vector extensions,
// AVX-512 intrinsics only for masked loads/stores, with portable fallbacks):
//   forward      micro_implicit: 8 output channels x 3 pixel vectors = 24 accumulators,
//                per step of q 8 weight broadcasts + 3 loads of U (+ the offset); or, where
//                choose_conv2d_forward picks it (channels fill a vector, long reduction), the
//                output channels in the lanes over row tiles that skip padding rows
//                (conv2d_lanes.h)
// The backward's strategies are named (GradInputAlgo, GradWeightAlgo in conv2d.h) and picked
// per shape by choose_conv2d_backward, which Python can call alone (_C.conv2d_backward_plan):
//   grad input   AsConv (the forward above on grad_out) or GemmCol2im (few input channels)
//   grad weight  TapRows8x2 / 8x3 (stride 1, CRS >= 4 vectors, C/G >= 8): output channels
//                in the lanes, tiles of 8 taps sharing (r, s) over the output pixels whose
//                input pixel exists, broadcasts from x itself (conv2d_wgrad_rows.h);
//                TransposedGemm8x3 / 12x2 / 10x2 (the other stride_h = 1 shapes): output
//                channels in the lanes, grad_out transposed per image, tiles of (q sharing a
//                kernel row, channel vectors) over the pixels whose input row is not padding,
//                broadcasts from U (WgradTransposed); PixelDot (short CRS, a first layer): dot products
//                over pixel vectors, 4 x 6 tiles summed lane-wise per chunk (WgradPixelDot);
//                Im2colGemm (stride_h > 1, WgradIm2col)
// Other shapes (stride_h > 1) use im2col + gemm_packed (cpu_gemm.h): A packed in panels of MR
// rows, B read in tiles of NR = 2 vectors, an 8 x 32 register block, K blocked by KC for L1.
// Grad weight and bias are summed over a fixed number of chunks of the batch, each chunk
// by one thread, and the chunks added in order: the result does not depend on the thread
// count.
#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>  // madvise (prefault_part)
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "conv2d.h"
#include "conv2d_lanes.h"
#include "conv2d_wgrad_rows.h"
#include "cpu_gemm.h"

namespace dlsys {

namespace {

using namespace cpu;  // NOLINT: the building blocks of cpu_gemm.h


// c[j] (+)= v[j] for j < cnt < VL.
// NOTE: with AVX-512 a masked load/store; the portable loop below is turned by GCC into a
// memcpy call per run, which was the largest cost of narrow outputs (a 14- or 13-wide output
// row is always a partial run).
#if defined(__AVX512F__)
inline void masked_store_run(float *c, VecType<float>::type v, int64_t cnt, bool accumulate) {
  const __mmask16 m = static_cast<__mmask16>((1u << cnt) - 1u);
  __m512 x = reinterpret_cast<__m512>(v);
  if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));
  _mm512_mask_storeu_ps(c, m, x);
}
inline void masked_store_run(double *c, VecType<double>::type v, int64_t cnt, bool accumulate) {
  const __mmask8 m = static_cast<__mmask8>((1u << cnt) - 1u);
  __m512d x = reinterpret_cast<__m512d>(v);
  if (accumulate) x = _mm512_add_pd(x, _mm512_maskz_loadu_pd(m, c));
  _mm512_mask_storeu_pd(c, m, x);
}
#else
template <typename T>
inline void masked_store_run(T *c, typename VecType<T>::type v, int64_t cnt, bool accumulate) {
  for (int64_t j = 0; j < cnt; ++j) c[j] = accumulate ? c[j] + v[j] : v[j];
}
#endif

// c[j] (+)= v[j] for j < cnt: one vector store for a full run, a masked store otherwise.
template <typename T>
inline void store_run(T *c, typename VecType<T>::type v, int64_t cnt, bool accumulate) {
  constexpr int VL = Vec<T>::VL;
  if (cnt == VL) {
    vstore(c, accumulate ? vload(c) + v : v);
    return;
  }
  if (cnt <= 0) return;
  masked_store_run(c, v, cnt, accumulate);
}

// ---- shifted copies: the output pixels of an image as one flat row (stride_h == 1) -------
//
// With U[c, s, h, ow] = xpad[c, h, ow*stride_w + s*dil_w] (h over the OH + dil_h*(R-1) input
// rows the output needs), Xcol row q = (c, r, s) at flat output pixel p = oh*OW + ow is
// U[c, s, oh + r*dil_h, ow] = U_flat[off[q] + p] with off[q] = ((c*S + s)*Hq + r*dil_h)*OW:
// every Xcol row is a contiguous run of U, whatever OW is. The implicit GEMM then walks the
// flat pixels in 16-lane vectors (169 pixels of a 13x13 map: 11 vectors, 176 lanes) where
// runs along output rows needed one vector per row (13 vectors, 208 lanes): 13-19% fewer
// FMAs for 13- and 14-wide maps. U is S times the padded input, not R*S times like im2col.
struct Shifted {
  int64_t Hq, size;  // rows per (c, s) block; elements incl. VL of zero slack
};

Shifted shifted_dims(const ConvDims &d, int vl) {
  const int64_t Hq = d.OH + d.dil_h * (d.R - 1);  // stride_h == 1
  return {Hq, d.Cg() * d.S * Hq * d.OW + vl};
}

// Masked vector moves: lanes whose bit is set in m. With AVX-512 one instruction each (masked
// lanes are neither read nor written, so they may lie past the end of a buffer).
#if defined(__AVX512F__)
inline VecType<float>::type mload(const float *p, uint32_t m) {
  return reinterpret_cast<VecType<float>::type>(_mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p));
}
inline VecType<double>::type mload(const double *p, uint32_t m) {
  return reinterpret_cast<VecType<double>::type>(_mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p));
}
inline void mstore(float *p, uint32_t m, VecType<float>::type v) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), reinterpret_cast<__m512>(v));
}
inline void mstore(double *p, uint32_t m, VecType<double>::type v) {
  _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), reinterpret_cast<__m512d>(v));
}
#else
template <typename T>
inline typename VecType<T>::type mload(const T *p, uint32_t m) {
  typename VecType<T>::type v{};
  for (int j = 0; j < Vec<T>::VL; ++j)
    if (m >> j & 1u) v[j] = p[j];
  return v;
}
template <typename T>
inline void mstore(T *p, uint32_t m, typename VecType<T>::type v) {
  for (int j = 0; j < Vec<T>::VL; ++j)
    if (m >> j & 1u) p[j] = v[j];
}
#endif

// u = U of one image and group (layout above); xg is (Cg, H, W).
// NOTE: a row of U is 13-28 elements, so the per-row work must be a few instructions: the
// masks of each vector segment depend only on s and are computed once per (c, s) (per row
// they cost a third of the grad input of conv layer 2), and the next channel is prefetched
// (the rows are read 5 times, the first time from memory).
template <typename T>
void shift_input(const ConvDims &d, const Shifted &sh, const T *xg, T *u) {
  constexpr int VL = Vec<T>::VL, kMaxSeg = 8;
  using V = typename VecType<T>::type;
  const int64_t nseg = (d.OW + VL - 1) / VL;
  const bool fast = d.stride_w == 1 && nseg <= kMaxSeg;
  uint32_t lm[kMaxSeg], sm[kMaxSeg];
  for (int64_t c = 0; c < d.Cg(); ++c) {
    if (c + 1 < d.Cg())
      for (int64_t e = 0; e < d.H * d.W; e += 64 / static_cast<int64_t>(sizeof(T)))
        __builtin_prefetch(xg + (c + 1) * d.H * d.W + e);
    for (int64_t s = 0; s < d.S; ++s) {
      const int64_t off = s * d.dil_w - d.pad_left;
      int64_t lo, hi;
      valid_range(off, d.stride_w, d.W, d.OW, lo, hi);
      T *blk = u + (c * d.S + s) * sh.Hq * d.OW;
      if (fast) {
        for (int64_t g = 0; g < nseg; ++g) {
          const int64_t j0 = g * VL, cnt = std::min<int64_t>(VL, d.OW - j0);
          const int64_t a = std::clamp<int64_t>(lo - j0, 0, cnt);
          const int64_t b = std::clamp<int64_t>(hi - j0, 0, cnt);
          sm[g] = static_cast<uint32_t>((uint64_t{1} << cnt) - 1u);
          lm[g] = static_cast<uint32_t>(((uint64_t{1} << b) - 1u) & ~((uint64_t{1} << a) - 1u));
        }
      }
      for (int64_t h = 0; h < sh.Hq; ++h) {
        T *out = blk + h * d.OW;
        const int64_t ih = h - d.pad_top;
        if (ih < 0 || ih >= d.H) {  // a padding row
          for (int64_t g = 0; g < nseg; ++g)
            mstore(out + g * VL, static_cast<uint32_t>((uint64_t{1} << std::min<int64_t>(VL, d.OW - g * VL)) - 1u), V{});
          continue;
        }
        const T *in = xg + (c * d.H + ih) * d.W + off;  // may point before the row: lanes
        if (fast) {                                       // before lo are masked off
          for (int64_t g = 0; g < nseg; ++g) mstore(out + g * VL, sm[g], mload(in + g * VL, lm[g]));
        } else {
          for (int64_t ow = 0; ow < d.OW; ++ow)
            out[ow] = ow >= lo && ow < hi ? in[ow * d.stride_w] : T(0);
        }
      }
    }
  }
  std::fill(u + sh.size - VL, u + sh.size, T(0));
}

std::vector<int64_t> shifted_offsets(const ConvDims &d, const Shifted &sh) {
  std::vector<int64_t> off(static_cast<size_t>(d.CRS()));
  for (int64_t c = 0; c < d.Cg(); ++c)
    for (int64_t r = 0; r < d.R; ++r)
      for (int64_t s = 0; s < d.S; ++s)
        off[static_cast<size_t>((c * d.R + r) * d.S + s)] =
            ((c * d.S + s) * sh.Hq + r * d.dil_h) * d.OW;
  return off;
}

// C rows i < mr, runs j < NRUN: C[j][i*ldc + e] (+)= sum_p Ap[p][i] * b[j][off[p] + e] for
// e < cnt[j]. bias (mr values, or null) starts the sums.
// NOTE: NRUN = 3 runs per call (MR x 3 = 24 accumulators with AVX-512 float32, 12 loads per
// 24 FMAs) instead of 2 (16 accumulators, 11 loads per 16 FMAs): the loads of x are
// unaligned and mostly split across cache lines, so fewer loads per FMA is what counts
// (docs/kernels.md has the measurements).
template <typename T, int NRUN>
inline void micro_implicit(int64_t kc, const T *__restrict Ap, const int64_t *__restrict off,
                           const T *const *b, T *const *C, int64_t ldc, int64_t mr,
                           const int64_t *cnt, bool accumulate, const T *bias) {
  using V = typename VecType<T>::type;
  constexpr int MR = Tile<T>::MR;
  V acc[MR][NRUN];
  const T *bp[NRUN];
  for (int j = 0; j < NRUN; ++j) bp[j] = b[j];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NRUN; ++j) acc[i][j] = (bias && i < mr) ? bias[i] - V{} : V{};
  for (int64_t p = 0; p < kc; ++p) {
    V x[NRUN];
    const int64_t o = off[p];
    for (int j = 0; j < NRUN; ++j) x[j] = vload(bp[j] + o);
    const T *a = Ap + p * MR;
    for (int i = 0; i < MR; ++i) {
      const V ai = a[i] - V{};  // broadcast (x - 0 folds to x; 0 + x would not: -0)
      for (int j = 0; j < NRUN; ++j) acc[i][j] += ai * x[j];
    }
  }
  for (int64_t i = 0; i < mr; ++i)
    for (int j = 0; j < NRUN; ++j) store_run(C[j] + i * ldc, acc[i][j], cnt[j], accumulate);
}

// Forward of one image and group by implicit GEMM over the flat output pixels:
// yg (Kg, P) = bias + Wg * Xcol, Xcol row q being u + off[q] (shifted copies, above).
template <typename T>
void forward_implicit(const ConvDims &d, const int64_t *off, const T *Ap, const T *u, T *yg,
                      const T *bias) {
  constexpr int MR = Tile<T>::MR, VL = Vec<T>::VL;
  constexpr int NRUN = 3;
  const int64_t Kg = d.Kg(), CRS = d.CRS(), P = d.P();
  const int64_t nrun = (P + VL - 1) / VL;  // vectors of VL output pixels, the last partial
  for (int64_t k0 = 0; k0 < CRS; k0 += kKC) {
    const int64_t kc = std::min(kKC, CRS - k0);
    const bool acc = k0 > 0;  // the first k-block writes, starting from the bias
    for (int64_t t = 0; t < nrun; t += NRUN) {
      const int64_t nt = std::min<int64_t>(NRUN, nrun - t);
      const T *b[NRUN];
      int64_t cnt[NRUN];
      for (int64_t j = 0; j < nt; ++j) {
        const int64_t p0 = (t + j) * VL;
        b[j] = u + p0;
        cnt[j] = std::min<int64_t>(VL, P - p0);
      }
      for (int64_t i0 = 0; i0 < Kg; i0 += MR) {
        const T *a = Ap + i0 * CRS + k0 * MR;
        const int64_t mr = std::min<int64_t>(MR, Kg - i0);
        const T *bi = bias && !acc ? bias + i0 : nullptr;
        T *ci[NRUN];
        for (int64_t j = 0; j < nt; ++j) ci[j] = yg + i0 * P + (t + j) * VL;
        if (nt == 3)
          micro_implicit<T, 3>(kc, a, off + k0, b, ci, P, mr, cnt, acc, bi);
        else if (nt == 2)
          micro_implicit<T, 2>(kc, a, off + k0, b, ci, P, mr, cnt, acc, bi);
        else
          micro_implicit<T, 1>(kc, a, off + k0, b, ci, P, mr, cnt, acc, bi);
      }
    }
  }
}

// ---- grad weight by dot products over flat output pixels (stride_h == 1, short CRS) -----
//
// For a short reduction (a first layer: CRS = 25) transposing grad_out would cost as much as
// the products, so the vector lanes run over output pixels instead: gw[k, q] = sum_p
// gy[k, p] * U[off[q] + p], both operands contiguous. A tile of MK x NQ accumulator vectors
// (4 x 6: 24 zmm, 10 loads per 24 FMAs) runs over one image's pixels, the image's grad_out
// rows and U staying in L1; the vectors are kept per (k, q) in a chunk buffer (loaded and
// stored once per tile and image) and summed across lanes once per chunk. The last, partial
// vector is loaded masked (zeros past P, so no inf or NaN of the next row leaks in as 0*inf).

// The first cnt (<= VL) elements of p, zeros in the other lanes.
#if defined(__AVX512F__)
inline VecType<float>::type load_first(const float *p, int64_t cnt) {
  return reinterpret_cast<VecType<float>::type>(
      _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << cnt) - 1u), p));
}
inline VecType<double>::type load_first(const double *p, int64_t cnt) {
  return reinterpret_cast<VecType<double>::type>(
      _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << cnt) - 1u), p));
}
#else
template <typename T>
inline typename VecType<T>::type load_first(const T *p, int64_t cnt) {
  typename VecType<T>::type v{};
  for (int64_t j = 0; j < cnt; ++j) v[j] = p[j];
  return v;
}
#endif

// Forces v into a vector register at this point. NOTE: without it GCC folded each use of
// the NQ x vectors into its FMA as a memory operand (MK loads of each instead of one: 24
// loads per 20 FMAs, unaligned, where Zen 4 does one 512-bit load per cycle).
template <typename V>
inline void keep_in_register(V &v) {
#if defined(__AVX__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// acc (Kg x CRS x VL per group) += lane-wise products of MK grad_out rows (gyk, row stride P)
// and NQ Xcol rows (u + offq[b]); with BIAS also bsum (MK x VL) += the grad_out rows.
template <typename T, int MK, int NQ, bool BIAS>
void wgrad_dot_tile(int64_t P, const T *gyk, const T *u, const int64_t *offq, T *acc_out,
                    int64_t CRS, T *bsum) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  V acc[MK][NQ], bs[MK];
  const T *xq[NQ];
  for (int b = 0; b < NQ; ++b) xq[b] = u + offq[b];
  for (int a = 0; a < MK; ++a) {
    bs[a] = BIAS ? vload(bsum + a * VL) : V{};
    for (int b = 0; b < NQ; ++b) acc[a][b] = vload(acc_out + (a * CRS + b) * VL);
  }
  const int64_t pfull = P / VL * VL;
  for (int64_t p = 0; p < pfull; p += VL) {  // full vectors (no branch: accumulators in zmm)
    V xv[NQ];
    for (int b = 0; b < NQ; ++b) {
      xv[b] = vload(xq[b] + p);
      keep_in_register(xv[b]);
    }
    for (int a = 0; a < MK; ++a) {
      const V g = vload(gyk + a * P + p);
      if (BIAS) bs[a] += g;
      for (int b = 0; b < NQ; ++b) acc[a][b] += g * xv[b];
    }
  }
  if (pfull < P) {  // the partial vector
    V xv[NQ];
    for (int b = 0; b < NQ; ++b) xv[b] = load_first(xq[b] + pfull, P - pfull);
    for (int a = 0; a < MK; ++a) {
      const V g = load_first(gyk + a * P + pfull, P - pfull);
      if (BIAS) bs[a] += g;
      for (int b = 0; b < NQ; ++b) acc[a][b] += g * xv[b];
    }
  }
  for (int a = 0; a < MK; ++a) {
    if (BIAS) vstore(bsum + a * VL, bs[a]);
    for (int b = 0; b < NQ; ++b) vstore(acc_out + (a * CRS + b) * VL, acc[a][b]);
  }
}

// One image and group: acc (Kg, CRS, VL) += products; bsum (Kg, VL) += grad_out rows (or null).
template <typename T, int MK, int NQ>
void wgrad_dot_image_t(int64_t Kg, int64_t CRS, int64_t P, const T *gyg, const T *u,
                       const int64_t *off, T *acc, T *bsum) {
  constexpr int VL = Vec<T>::VL;
  const int64_t kmain = Kg / MK * MK, qmain = CRS / NQ * NQ;
  for (int64_t k0 = 0; k0 < Kg; k0 += (k0 < kmain ? MK : 1))
    for (int64_t q0 = 0; q0 < CRS; q0 += (q0 < qmain ? NQ : 1)) {
      const T *g = gyg + k0 * P;
      T *o = acc + (k0 * CRS + q0) * VL;
      T *bs = bsum && q0 == 0 ? bsum + k0 * VL : nullptr;  // each row summed once
      const bool km = k0 < kmain, qm = q0 < qmain;
      if (km && qm)
        bs ? wgrad_dot_tile<T, MK, NQ, true>(P, g, u, off + q0, o, CRS, bs)
           : wgrad_dot_tile<T, MK, NQ, false>(P, g, u, off + q0, o, CRS, bs);
      else if (km)
        bs ? wgrad_dot_tile<T, MK, 1, true>(P, g, u, off + q0, o, CRS, bs)
           : wgrad_dot_tile<T, MK, 1, false>(P, g, u, off + q0, o, CRS, bs);
      else if (qm)
        bs ? wgrad_dot_tile<T, 1, NQ, true>(P, g, u, off + q0, o, CRS, bs)
           : wgrad_dot_tile<T, 1, NQ, false>(P, g, u, off + q0, o, CRS, bs);
      else
        bs ? wgrad_dot_tile<T, 1, 1, true>(P, g, u, off + q0, o, CRS, bs)
           : wgrad_dot_tile<T, 1, 1, false>(P, g, u, off + q0, o, CRS, bs);
    }
}

// 4 x 6 tiles, or 4 x 5 where 5 divides CRS and 6 does not (5x5 kernels: no 1-wide tail,
// whose 5 loads per 4 FMAs made it cost a fifth of the whole for CRS = 25).
template <typename T>
void wgrad_dot_image(int64_t Kg, int64_t CRS, int64_t P, const T *gyg, const T *u,
                     const int64_t *off, T *acc, T *bsum) {
  if (CRS % 6 != 0 && CRS % 5 == 0)
    wgrad_dot_image_t<T, 4, 5>(Kg, CRS, P, gyg, u, off, acc, bsum);
  else
    wgrad_dot_image_t<T, 4, 6>(Kg, CRS, P, gyg, u, off, acc, bsum);
}

// ---- grad weight as a GEMM with output channels in the vector lanes (stride_h == 1) ------
//
// gwT[q, k] += sum_p U[off[q] + p] * gyT[p, k] over the flat output pixels p of one image,
// with U the shifted copies of the input (above) and gyT (P, ldk) the image's grad_out
// transposed, k zero-padded to ldk. A tile of NQ x NV accumulator vectors (12 x 2 or 8 x 3:
// 24 zmm; 10 x 2: 20) takes per pixel NV aligned vector loads of gyT and NQ scalar broadcasts from U
// rows (4-byte loads never split a cache line): 14 or 11 loads per 24 FMAs, all from L1
// (a gyT slice of NV vectors is P*NV*64 B, 21 KB for 169 pixels). It replaced dot products
// along the pixels (10 loads per 24 FMAs, half of them unaligned and from L2, and a
// horizontal sum per output; docs/kernels.md has the before and after).
// NOTE: never inlined: inlined into a large caller GCC kept some accumulators on the stack
// (an FMA with a memory accumulator), 22% slower.
template <typename T, int NQ, int NV>
__attribute__((noinline)) void wgrad_tile(int64_t p0, int64_t p1, const T *u, const int64_t *offq, const T *gyT,
                int64_t ldk, T *const *out) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  V acc[NQ][NV];
  const T *uq[NQ];
  for (int i = 0; i < NQ; ++i) {
    uq[i] = u + offq[i];
    for (int v = 0; v < NV; ++v) acc[i][v] = vload(out[i] + v * VL);
  }
  for (int64_t p = p0; p < p1; ++p) {
    V g[NV];
    for (int v = 0; v < NV; ++v) g[v] = vload(gyT + p * ldk + v * VL);
    for (int i = 0; i < NQ; ++i) {
      const V xi = uq[i][p] - V{};  // broadcast
      for (int v = 0; v < NV; ++v) acc[i][v] += xi * g[v];
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int v = 0; v < NV; ++v) vstore(out[i] + v * VL, acc[i][v]);
}

// The taps of a grad weight tile: NQ rows q of gwT that share the kernel row r, and the flat
// pixels [p0, p1) whose input row is inside the image for that r (the others read zero
// padding and add nothing: 64 of the 70 row taps remain for 5x5 on 14x14). A kernel row's
// last tile is filled up with dummy taps (q = CRS: a scratch row of gwT, never reduced).
struct WgradTaps {
  int64_t p0, p1;
  std::vector<int64_t> q;  // NQ rows of gwT
};

inline std::vector<WgradTaps> wgrad_taps(const ConvDims &d, int nq) {
  std::vector<WgradTaps> tiles;
  const int64_t per_r = d.Cg() * d.S;
  for (int64_t r = 0; r < d.R; ++r) {
    const int64_t lo = std::clamp<int64_t>(d.pad_top - r * d.dil_h, 0, d.OH);
    const int64_t hi = std::clamp<int64_t>(d.H + d.pad_top - r * d.dil_h, lo, d.OH);
    for (int64_t t0 = 0; t0 < per_r; t0 += nq) {
      WgradTaps t{lo * d.OW, hi * d.OW, std::vector<int64_t>(static_cast<size_t>(nq), d.CRS())};
      for (int64_t i = 0; i < nq && t0 + i < per_r; ++i) {
        const int64_t c = (t0 + i) / d.S, s = (t0 + i) % d.S;
        t.q[static_cast<size_t>(i)] = (c * d.R + r) * d.S + s;
      }
      if (t.p1 > t.p0) tiles.push_back(std::move(t));
    }
  }
  return tiles;
}

// One image's contribution to gwT (CRS + 1 rows x ldk; row CRS is the dummy taps' scratch).
template <typename T, int NQ, int NV>
void wgrad_image(const std::vector<WgradTaps> &tiles, const int64_t *off, int64_t ldk,
                 const T *u, const T *gyT, T *gwT) {
  constexpr int VL = Vec<T>::VL;
  for (int64_t kv = 0; kv < ldk; kv += NV * VL)  // the gyT slice stays in cache over all q
    for (const WgradTaps &t : tiles) {
      int64_t offq[NQ];
      T *out[NQ];
      for (int i = 0; i < NQ; ++i) {
        offq[i] = off[t.q[static_cast<size_t>(i)]];
        out[i] = gwT + t.q[static_cast<size_t>(i)] * ldk + kv;
      }
      wgrad_tile<T, NQ, NV>(t.p0, t.p1, u, offq, gyT + kv, ldk, out);
    }
}


}  // namespace

// NOTE: a freshly allocated output is not yet mapped: writing it takes one page fault per
// 4 KB page, which on a VM can cost more than the arithmetic of a first conv layer's output.
// Each thread maps its share of the pages in one madvise call instead (Linux >= 5.14;
// contents are unchanged, an error only means the faults happen later). From 1 MB up
// (docs/kernels.md has the measurements). Not for a reused block of the output cache
// (out_pool.cpp): on mapped pages the call only walks the page table, which for 6.4 MB took
// as long as a tenth of conv layer 1's forward.
template <typename T>
void prefault_part(T *y, int64_t n) {
#if defined(MADV_POPULATE_WRITE)
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
  if (bytes < (int64_t{1} << 20)) return;
  const uintptr_t page = 4096, lo = (reinterpret_cast<uintptr_t>(y) + page - 1) / page * page;
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(y) + static_cast<uintptr_t>(bytes)) / page * page;
  const uintptr_t npages = (hi - lo) / page, nt = static_cast<uintptr_t>(omp_get_num_threads());
  const uintptr_t t = static_cast<uintptr_t>(omp_get_thread_num());
  const uintptr_t a = lo + npages * t / nt * page, b = lo + npages * (t + 1) / nt * page;
  if (b > a) madvise(reinterpret_cast<void *>(a), b - a, MADV_POPULATE_WRITE);
#else
  (void)y;
  (void)n;
#endif
}

namespace {

// What every image of a forward shares: the path (choose_conv2d_forward), the packed
// weights of every group (group g's panels at g * psz; the lanes path packs its own), the
// shifted-copy offsets; and per thread the scratch buffers.
template <typename T>
struct ForwardPlan {
  const ConvDims &d;
  ForwardAlgo algo;
  bool direct, implicit, lanes;
  int64_t psz;
  std::vector<T> wp;
  Shifted sh;
  std::vector<int64_t> off;
  std::unique_ptr<LanesPlan<T>> lp;

  ForwardPlan(const ConvDims &dims, const T *w, const T *b)
      : d(dims), algo(choose_conv2d_forward(dims, static_cast<int>(sizeof(T)))),
        direct(algo == ForwardAlgo::Direct1x1), implicit(algo == ForwardAlgo::ImplicitGemm),
        lanes(algo == ForwardAlgo::Lanes),
        psz(lanes ? 0 : packed_size<T>(dims.Kg(), dims.CRS())),
        wp(static_cast<size_t>(dims.G * psz)), sh(shifted_dims(dims, Vec<T>::VL)),
        off(implicit ? shifted_offsets(dims, sh) : std::vector<int64_t>()) {
    if (lanes) {
      lp.reset(new LanesPlan<T>(dims, w, b));
      return;
    }
    for (int64_t g = 0; g < d.G; ++g)
      pack_a(d.Kg(), d.CRS(), w + g * d.Kg() * d.CRS(), d.CRS(), wp.data() + g * psz);
  }

  struct Scratch {
    std::vector<T> col, xp, btmp;
    explicit Scratch(const ForwardPlan &f)
        : col(f.direct || f.implicit || f.lanes ? 0 : static_cast<size_t>(f.d.CRS() * f.d.P())),
          xp(f.implicit ? static_cast<size_t>(f.sh.size)
                        : f.lanes ? static_cast<size_t>(f.lp->xp_size() + f.lp->tmp_size())
                                  : 0),
          btmp(f.lanes ? 0 : static_cast<size_t>(kKC * Tile<T>::NR)) {}
  };

  // yg (Kg, P) = conv of image n, group g (+ bias).
  void run(const T *x, const T *b, int64_t n, int64_t g, T *yg, Scratch &s) const {
    const int64_t Kg = d.Kg(), P = d.P();
    const T *xg = x + (n * d.C + g * d.Cg()) * d.H * d.W;  // (Cg, H, W)
    if (lanes) {
      T *tmp = s.xp.data() + lp->xp_size();
      lp->pad_input(xg, s.xp.data());
      lp->run(s.xp.data(), g, yg, tmp);
      return;
    }
    if (implicit) {
      shift_input(d, sh, xg, s.xp.data());
      forward_implicit(d, off.data(), wp.data() + g * psz, s.xp.data(), yg,
                       b ? b + g * Kg : nullptr);
      return;
    }
    if (b) {
      for (int64_t k = 0; k < Kg; ++k) std::fill(yg + k * P, yg + (k + 1) * P, b[g * Kg + k]);
    }
    const T *B = xg;
    if (!direct) {
      im2col(d, xg, s.col.data());
      B = s.col.data();
    }
    gemm_packed<T>(Kg, P, d.CRS(), wp.data() + g * psz, B, P, yg, P, b != nullptr,
                   s.btmp.data());
  }
};

}  // namespace

ForwardAlgo choose_conv2d_forward(const ConvDims &d, int elem_bytes) {
  const int64_t vl = kVecBytes / elem_bytes;
  if (d.R == 1 && d.S == 1 && d.stride_h == 1 && d.stride_w == 1 && d.pad_top == 0 &&
      d.pad_left == 0 && d.pad_bottom == 0 && d.pad_right == 0)
    return ForwardAlgo::Direct1x1;  // 1x1: Xcol is the input itself
  if (d.stride_h != 1) return ForwardAlgo::Im2colGemm;
  // Output channels in the lanes where they fill at least one vector and the reduction is
  // long (conv layer 2, its grad input as a conv, inception 3x3); a first layer (CRS = 25)
  // keeps the flat-pixel implicit GEMM, which is faster there (docs/kernels.md).
  if (d.stride_w == 1 && d.Kg() >= vl && d.CRS() >= 4 * vl) return ForwardAlgo::Lanes;
  return ForwardAlgo::ImplicitGemm;
}

const char *algo_name(ForwardAlgo a) {
  switch (a) {
    case ForwardAlgo::Direct1x1: return "direct_1x1";
    case ForwardAlgo::ImplicitGemm: return "implicit_gemm";
    case ForwardAlgo::Lanes: return "channels_in_lanes";
    default: return "im2col_gemm";
  }
}

template <typename T>
void conv2d_forward_cpu(const ConvDims &d, const T *x, const T *w, const T *b, T *y,
                        int threads) {
  if (d.N == 0) return;
  const ForwardPlan<T> plan(d, w, b);
  const int64_t tasks = d.N * d.G, Kg = d.Kg(), P = d.P();
  const bool prefault = !out_pool_mapped(y);  // a reused cached output is mapped already
#pragma omp parallel num_threads(threads) if (tasks > 1)
  {
    if (prefault) prefault_part(y, d.y_numel());
    typename ForwardPlan<T>::Scratch scratch(plan);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t n = task / d.G, g = task % d.G;
      plan.run(x, b, n, g, y + (n * d.K + g * Kg) * P, scratch);
    }
  }
}

template <typename T>
void conv2d_forward_cpu_images(const ConvDims &d, const T *x, const T *w, const T *b,
                               int threads, const std::function<void(int64_t, T *)> &sink) {
  if (d.N == 0) return;
  const ForwardPlan<T> plan(d, w, b);
#pragma omp parallel num_threads(threads) if (d.N > 1)
  {
    typename ForwardPlan<T>::Scratch scratch(plan);
    std::vector<T> y(static_cast<size_t>(d.K * d.P()));  // one image's output, in L2
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.N; ++n) {
      for (int64_t g = 0; g < d.G; ++g) plan.run(x, b, n, g, y.data() + g * d.Kg() * d.P(), scratch);
      sink(n, y.data());
    }
  }
}

// ---- backward: the strategies and the chooser ---------------------------------------------

ConvBackwardPlan choose_conv2d_backward(const ConvDims &d, int elem_bytes) {
  const int64_t vl = kVecBytes / elem_bytes;
  ConvBackwardPlan plan;
  // grad input of a stride-1 convolution is itself a stride-1 convolution: of gy (K channels,
  // OH x OW) with the weights flipped in r and s and transposed per group to (C, K/G, R, S),
  // padded by dil*(R-1) - pad (which must be >= 0), giving an (H, W) output. Its GEMM has
  // C/G rows, so it is used when C/G fills a row panel (>= MR); with fewer input channels (a
  // first layer) GEMM + col2im, whose rows are the C/G*R*S kernel taps, is faster.
  const bool as_conv = d.Cg() >= kMR && d.stride_h == 1 && d.stride_w == 1 &&
                       d.pad_top <= d.dil_h * (d.R - 1) && d.pad_bottom <= d.dil_h * (d.R - 1) &&
                       d.pad_left <= d.dil_w * (d.S - 1) && d.pad_right <= d.dil_w * (d.S - 1);
  plan.grad_input = as_conv ? GradInputAlgo::AsConv : GradInputAlgo::GemmCol2im;
  // grad weight, stride_h == 1: a GEMM with the output channels in the vector lanes when the
  // reduction CRS is long enough that transposing grad_out (P*K/G moves per image) costs
  // little beside its P*K/G*CRS MACs, in 8 x 3 tiles when the channel vectors come in
  // threes, else 12 x 2 or 10 x 2, whichever pads a kernel row's C/G*S taps less (tiles
  // share a kernel row; 80 taps: 10 x 2 exactly, 12 x 2 with 4 dummies); dot products over
  // the pixels for short reductions (a first layer); strided rows: GEMM on im2col.
  const int64_t nvec = (d.Kg() + vl - 1) / vl, per_r = d.Cg() * d.S;
  const auto padded = [per_r](int64_t nq) { return (per_r + nq - 1) / nq * nq; };
  // Stride 1 with 8 or more input channels per group: tiles of 8 taps sharing (r, s), over
  // only the pixels whose input exists (conv2d_wgrad_rows.h), in 8 x 3 tiles where the
  // channel vectors come in threes but not pairs, else 8 x 2.
  if (d.stride_h != 1)
    plan.grad_weight = GradWeightAlgo::Im2colGemm;
  else if (d.CRS() < 4 * vl)
    plan.grad_weight = GradWeightAlgo::PixelDot;
  else if (d.stride_w == 1 && d.Cg() >= 8)
    plan.grad_weight = nvec % 2 != 0 && nvec % 3 == 0 ? GradWeightAlgo::TapRows8x3
                                                      : GradWeightAlgo::TapRows8x2;
  else if (nvec % 3 == 0)
    plan.grad_weight = GradWeightAlgo::TransposedGemm8x3;
  else
    plan.grad_weight = padded(10) < padded(12) ? GradWeightAlgo::TransposedGemm10x2
                                               : GradWeightAlgo::TransposedGemm12x2;
  return plan;
}

const char *algo_name(GradInputAlgo a) {
  return a == GradInputAlgo::AsConv ? "as_conv" : "gemm_col2im";
}

const char *algo_name(GradWeightAlgo a) {
  switch (a) {
    case GradWeightAlgo::TapRows8x2: return "tap_rows_8x2";
    case GradWeightAlgo::TapRows8x3: return "tap_rows_8x3";
    case GradWeightAlgo::TransposedGemm8x3: return "transposed_gemm_8x3";
    case GradWeightAlgo::TransposedGemm12x2: return "transposed_gemm_12x2";
    case GradWeightAlgo::TransposedGemm10x2: return "transposed_gemm_10x2";
    case GradWeightAlgo::PixelDot: return "pixel_dot";
    default: return "im2col_gemm";
  }
}

namespace {

// GradInputAlgo::AsConv (see choose_conv2d_backward): the dims of that conv, of gy (K
// channels, OH x OW) with the weights flipped in r and s and transposed per group to
// (C, K/G, R, S), padded by dil*(R-1) - pad, giving an (H, W) output.
inline ConvDims flipped_dims(const ConvDims &d) {
  ConvDims t = d;
  t.C = d.K;
  t.H = d.OH;
  t.W = d.OW;
  t.K = d.C;
  t.OH = d.H;
  t.OW = d.W;
  t.pad_top = d.dil_h * (d.R - 1) - d.pad_top;
  t.pad_bottom = d.dil_h * (d.R - 1) - d.pad_bottom;
  t.pad_left = d.dil_w * (d.S - 1) - d.pad_left;
  t.pad_right = d.dil_w * (d.S - 1) - d.pad_right;
  return t;
}

// wt[g*Cg + c, k, r, s] = w[g*Kg + k, c, R-1-r, S-1-s]; wt is (C, Kg, R, S)
template <typename T>
std::vector<T> flipped_weights(const ConvDims &d, const T *w) {
  const int64_t Kg = d.Kg(), Cg = d.Cg(), R = d.R, S = d.S;
  std::vector<T> wt(static_cast<size_t>(d.w_numel()));
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t k = 0; k < Kg; ++k)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            wt[static_cast<size_t>((((g * Cg + c) * Kg + k) * R + r) * S + s)] =
                w[(((g * Kg + k) * Cg + c) * R + (R - 1 - r)) * S + (S - 1 - s)];
  return wt;
}

template <typename T>
void grad_input_by_conv(const ConvDims &d, const T *w, const T *gy, T *gx, int threads) {
  const std::vector<T> wt = flipped_weights(d, w);
  conv2d_forward_cpu<T>(flipped_dims(d), gy, wt.data(), nullptr, gx, threads);
}

// The same, one image at a time (conv2d_backward_cpu_images): the flipped conv's forward
// plan built once.
template <typename T>
struct GradInputConv {
  ConvDims t;
  std::vector<T> wt;
  ForwardPlan<T> plan;
  GradInputConv(const ConvDims &d, const T *w)
      : t(flipped_dims(d)), wt(flipped_weights(d, w)), plan(t, wt.data(), nullptr) {}
  // gxn (C, H, W) of one image from its grad_out gyn (K, OH, OW).
  void run(const T *gyn, T *gxn, typename ForwardPlan<T>::Scratch &s) const {
    for (int64_t g = 0; g < t.G; ++g) plan.run(gyn, nullptr, 0, g, gxn + g * t.Kg() * t.P(), s);
  }
};

// GradInputAlgo::GemmCol2im: per image and group dXcol = W^T * dY (W^T packed once), then
// col2im into gx.
template <typename T>
void grad_input_by_gemm_col2im(const ConvDims &d, const T *w, const T *gy, T *gx, int threads) {
  const int64_t G = d.G, Kg = d.Kg(), Cg = d.Cg(), CRS = d.CRS(), P = d.P(), HW = d.H * d.W;
  std::fill(gx, gx + d.x_numel(), T(0));
  const int64_t psx = packed_size<T>(CRS, Kg);
  std::vector<T> wtp(static_cast<size_t>(G * psx));
  std::vector<T> wt(static_cast<size_t>(CRS * Kg));
  for (int64_t g = 0; g < G; ++g) {
    const T *wg = w + g * Kg * CRS;  // (Kg, CRS)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t q = 0; q < CRS; ++q) wt[static_cast<size_t>(q * Kg + k)] = wg[k * CRS + q];
    pack_a(CRS, Kg, wt.data(), Kg, wtp.data() + g * psx);
  }
#pragma omp parallel num_threads(threads) if (d.N > 1)
  {
    std::vector<T> col(static_cast<size_t>(CRS * P));
    std::vector<T> btmp(static_cast<size_t>(kKC * Tile<T>::NR));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const T *gyg = gy + (n * d.K + g * Kg) * P;  // (Kg, P)
        gemm_packed<T>(CRS, P, Kg, wtp.data() + g * psx, gyg, P, col.data(), P, false,
                       btmp.data());
        col2im_add(d, col.data(), gx + (n * d.C + g * Cg) * HW);
      }
  }
}

// Grad weight strategies. Each computes one chunk's partial sums (images [n0, n1)) into its
// own layout with chunk(), the grad bias too where it reads grad_out anyway (fuses_bias),
// and adds the chunks' partials into gw (K, C/G, R, S) in chunk order with reduce() (an
// orphaned `omp for`: called inside the driver's parallel region).

// GradWeightAlgo::TransposedGemm*: partial per group gwT (CRS + 1, ldk) (see wgrad_tile).
template <typename T, int NQ, int NV>
struct WgradTransposed {
  static constexpr int VL = Vec<T>::VL;
  static constexpr bool fuses_bias = true;
  const ConvDims &d;
  Shifted sh;
  int64_t ldk, rows;
  std::vector<int64_t> off;
  std::vector<WgradTaps> tiles;
  explicit WgradTransposed(const ConvDims &dims)
      : d(dims), sh(shifted_dims(dims, VL)),
        ldk(((dims.Kg() + VL - 1) / VL + NV - 1) / NV * NV * VL), rows(dims.CRS() + 1),
        off(shifted_offsets(dims, sh)), tiles(wgrad_taps(dims, NQ)) {
    off.push_back(0);  // the dummy taps read U[0..P), unused
  }
  int64_t partial_size() const { return d.G * rows * ldk; }
  struct Scratch {
    std::vector<T> us;
    Aligned<T> gyT;
    explicit Scratch(const WgradTransposed &st)
        : us(static_cast<size_t>(st.sh.size)), gyT(st.d.P() * st.ldk) {}
  };
  void start(T *pw) const { std::fill(pw, pw + partial_size(), T(0)); }
  // Images [n0, n1), image n's grad_out at gyb + (n - n0) * K * P.
  void add(const T *x, const T *gyb, int64_t n0, int64_t n1, T *pw, T *pb, Scratch &sc) const {
    const int64_t Kg = d.Kg(), P = d.P();
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < d.G; ++g) {
        shift_input(d, sh, x + (n * d.C + g * d.Cg()) * d.H * d.W, sc.us.data());
        const T *gyg = gyb + ((n - n0) * d.K + g * Kg) * P;  // (Kg, P)
        T *gt = sc.gyT.data();
        transpose_rows(Kg, P, gyg, ldk, gt);
        if (pb) {  // grad bias from the transposed copy, in L1
          T *bk = pb + g * Kg;
          for (int64_t p = 0; p < P; ++p)
#pragma omp simd
            for (int64_t k = 0; k < Kg; ++k) bk[k] += gt[p * ldk + k];
        }
        wgrad_image<T, NQ, NV>(tiles, off.data(), ldk, sc.us.data(), gt, pw + g * rows * ldk);
      }
  }
  void finish(T *, T *) const {}
  void reduce(const T *pw, int64_t nch, T *gw) const {
    reduce_wgrad_partials(d, pw, nch, rows, ldk, gw);
  }
};

// GradWeightAlgo::PixelDot: partial per group lane-wise sums (Kg, CRS, VL), compacted to
// (K, CRS) at the end of the chunk; the grad bias lane-wise after them, (K, VL).
template <typename T>
struct WgradPixelDot {
  static constexpr int VL = Vec<T>::VL;
  static constexpr bool fuses_bias = true;
  const ConvDims &d;
  Shifted sh;
  std::vector<int64_t> off;
  explicit WgradPixelDot(const ConvDims &dims)
      : d(dims), sh(shifted_dims(dims, VL)), off(shifted_offsets(dims, sh)) {}
  int64_t partial_size() const { return d.G * d.CRS() * d.Kg() * VL + d.K * VL; }
  struct Scratch {
    std::vector<T> us;
    explicit Scratch(const WgradPixelDot &st) : us(static_cast<size_t>(st.sh.size)) {}
  };
  void start(T *pw) const { std::fill(pw, pw + partial_size(), T(0)); }
  void add(const T *x, const T *gyb, int64_t n0, int64_t n1, T *pw, T *pb, Scratch &sc) const {
    const int64_t Kg = d.Kg(), CRS = d.CRS(), P = d.P();
    T *bsum = pw + d.G * CRS * Kg * VL;  // (K, VL)
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < d.G; ++g) {
        shift_input(d, sh, x + (n * d.C + g * d.Cg()) * d.H * d.W, sc.us.data());
        wgrad_dot_image(Kg, CRS, P, gyb + ((n - n0) * d.K + g * Kg) * P, sc.us.data(),
                        off.data(), pw + g * Kg * CRS * VL, pb ? bsum + g * Kg * VL : nullptr);
      }
  }
  void finish(T *pw, T *pb) const {
    const int64_t Kg = d.Kg(), CRS = d.CRS();
    const T *bsum = pw + d.G * CRS * Kg * VL;
    if (pb)  // before the compaction below overwrites the front of pw
      for (int64_t k = 0; k < d.K; ++k) {
        T sum = 0;
        for (int j = 0; j < VL; ++j) sum += bsum[k * VL + j];
        pb[k] = sum;
      }
    for (int64_t e = 0; e < d.G * Kg * CRS; ++e) {  // lane sums, in a fixed order
      T sum = 0;
      for (int j = 0; j < VL; ++j) sum += pw[e * VL + j];
      pw[e] = sum;  // e <= e * VL: compacted in place to (K, CRS)
    }
  }
  void reduce(const T *pw, int64_t nch, T *gw) const {
    const int64_t CRS = d.CRS();
#pragma omp for schedule(static)
    for (int64_t k = 0; k < d.K; ++k)
      for (int64_t ch = 0; ch < nch; ++ch) {
        const T *src = pw + ch * partial_size() + k * CRS;
#pragma omp simd
        for (int64_t q = 0; q < CRS; ++q) gw[k * CRS + q] += src[q];
      }
  }
};

// GradWeightAlgo::Im2colGemm: partial per group dW^T (CRS, Kg) = Xcol * dY^T.
template <typename T>
struct WgradIm2col {
  static constexpr bool fuses_bias = false;
  const ConvDims &d;
  explicit WgradIm2col(const ConvDims &dims) : d(dims) {}
  int64_t partial_size() const { return d.G * d.CRS() * d.Kg(); }
  struct Scratch {
    std::vector<T> col, ap, gyt, btmp;
    explicit Scratch(const WgradIm2col &st)
        : col(static_cast<size_t>(st.d.CRS() * st.d.P())),
          ap(static_cast<size_t>(packed_size<T>(st.d.CRS(), st.d.P()))),
          gyt(static_cast<size_t>(st.d.P() * st.d.Kg())),
          btmp(static_cast<size_t>(kKC * Tile<T>::NR)) {}
  };
  void start(T *pw) const { std::fill(pw, pw + partial_size(), T(0)); }
  void add(const T *x, const T *gyb, int64_t n0, int64_t n1, T *pw, T *, Scratch &sc) const {
    const int64_t Kg = d.Kg(), CRS = d.CRS(), P = d.P();
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < d.G; ++g) {
        const T *gyg = gyb + ((n - n0) * d.K + g * Kg) * P;  // (Kg, P)
        im2col(d, x + (n * d.C + g * d.Cg()) * d.H * d.W, sc.col.data());
        pack_a(CRS, P, sc.col.data(), P, sc.ap.data());
        for (int64_t k = 0; k < Kg; ++k)
          for (int64_t p = 0; p < P; ++p)
            sc.gyt[static_cast<size_t>(p * Kg + k)] = gyg[k * P + p];
        gemm_packed<T>(CRS, Kg, P, sc.ap.data(), sc.gyt.data(), Kg, pw + g * CRS * Kg, Kg, true,
                       sc.btmp.data());
      }
  }
  void finish(T *, T *) const {}
  void reduce(const T *pw, int64_t nch, T *gw) const {
    const int64_t Kg = d.Kg(), CRS = d.CRS();
#pragma omp for schedule(static)
    for (int64_t q = 0; q < CRS; ++q)
      for (int64_t g = 0; g < d.G; ++g)
        for (int64_t ch = 0; ch < nch; ++ch) {
          const T *src = pw + ch * partial_size() + g * CRS * Kg + q * Kg;
          T *dst = gw + g * Kg * CRS + q;
          for (int64_t k = 0; k < Kg; ++k) dst[k * CRS] += src[k];
        }
  }
};

// Grad weight (gw, may be null) and grad bias (gb, may be null), both zeroed by the caller:
// partial sums over a fixed number of chunks of the batch, each chunk by one thread, added
// in chunk order, so the result does not depend on the thread count.
template <typename T, typename Strategy>
void grad_weight_bias(const ConvDims &d, const Strategy &st, const T *x, const T *gy, T *gw,
                      T *gb, int threads) {
  const int64_t nch = std::min<int64_t>(d.N, 16), wsz = gw ? st.partial_size() : 0;
  // NOTE: not value-initialised (each chunk writes its part before adding to it): zeroing
  // the whole buffer here was a serial pass over up to nch * wsz elements.
  std::unique_ptr<T[]> pw(gw ? new T[static_cast<size_t>(nch * wsz)] : nullptr);
  std::vector<T> pb(gb ? static_cast<size_t>(nch * d.K) : 0);
  const int64_t P = d.P();
#pragma omp parallel num_threads(threads) if (nch > 1)
  {
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < nch; ++ch) {
      const int64_t n0 = ch * d.N / nch, n1 = (ch + 1) * d.N / nch;
      T *pbc = gb ? pb.data() + ch * d.K : nullptr;
      if (pbc) std::fill(pbc, pbc + d.K, T(0));
      const bool fuse_bias = pbc && gw && Strategy::fuses_bias;
      if (pbc && !fuse_bias)
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t k = 0; k < d.K; ++k) {
            const T *gyk = gy + (n * d.K + k) * P;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t p = 0; p < P; ++p) s += gyk[p];
            pbc[k] += s;
          }
      if (gw) {
        T *pwc = pw.get() + ch * wsz;
        typename Strategy::Scratch sc(st);
        st.start(pwc);
        st.add(x, gy + n0 * d.K * P, n0, n1, pwc, fuse_bias ? pbc : nullptr, sc);
        st.finish(pwc, fuse_bias ? pbc : nullptr);
      }
    }
    if (gb) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < d.K; ++k)
        for (int64_t ch = 0; ch < nch; ++ch) gb[k] += pb[static_cast<size_t>(ch * d.K + k)];
    }
    if (gw) st.reduce(pw.get(), nch, gw);
  }
}

// The backward image by image (conv2d_backward_cpu_images): chunks of the batch as in
// grad_weight_bias; within a chunk, sub-blocks of images whose grad_out (written by source
// into a buffer of the thread, at most kSubBlockBytes) stays in L2 while it is read for
// grad input, then for grad weight. One parallel region for the whole batch.
constexpr int64_t kSubBlockBytes = int64_t{1} << 20;

template <typename T, typename Strategy>
void backward_by_image(const ConvDims &d, const Strategy &st, const GradInputConv<T> *gi,
                       const T *x, T *gx, T *gw, T *gb, int threads,
                       const std::function<void(int64_t, T *)> &source) {
  const int64_t nch = std::min<int64_t>(d.N, 16), wsz = gw ? st.partial_size() : 0;
  const int64_t P = d.P(), img = d.K * P, ximg = d.C * d.H * d.W;
  const int64_t sb = std::clamp<int64_t>(
      kSubBlockBytes / std::max<int64_t>(1, img * static_cast<int64_t>(sizeof(T))), 1,
      (d.N + nch - 1) / nch);
  std::unique_ptr<T[]> pw(gw ? new T[static_cast<size_t>(nch * wsz)] : nullptr);
  std::vector<T> pb(gb ? static_cast<size_t>(nch * d.K) : 0);
#pragma omp parallel num_threads(threads) if (nch > 1)
  {
    std::vector<T> gyb(static_cast<size_t>(sb * img));
    std::unique_ptr<typename ForwardPlan<T>::Scratch> fs(
        gi ? new typename ForwardPlan<T>::Scratch(gi->plan) : nullptr);
    std::unique_ptr<typename Strategy::Scratch> ws(gw ? new typename Strategy::Scratch(st)
                                                      : nullptr);
    // dynamic: a thread that loses its core to another process leaves its chunks to the
    // others (each chunk's sums are its own, so the result does not depend on who runs it)
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nch; ++ch) {
      const int64_t n0 = ch * d.N / nch, n1 = (ch + 1) * d.N / nch;
      T *pbc = gb ? pb.data() + ch * d.K : nullptr;
      if (pbc) std::fill(pbc, pbc + d.K, T(0));
      const bool fuse_bias = pbc && gw && Strategy::fuses_bias;
      T *pwc = gw ? pw.get() + ch * wsz : nullptr;
      if (gw) st.start(pwc);
      for (int64_t a = n0; a < n1; a += sb) {
        const int64_t b = std::min(n1, a + sb);
        for (int64_t n = a; n < b; ++n) source(n, gyb.data() + (n - a) * img);
        if (gi)
          for (int64_t n = a; n < b; ++n) gi->run(gyb.data() + (n - a) * img, gx + n * ximg, *fs);
        if (pbc && !fuse_bias)
          for (int64_t e = 0; e < (b - a) * d.K; ++e) {
            const T *gyk = gyb.data() + e * P;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t p = 0; p < P; ++p) s += gyk[p];
            pbc[e % d.K] += s;
          }
        if (gw) st.add(x, gyb.data(), a, b, pwc, fuse_bias ? pbc : nullptr, *ws);
      }
      if (gw) st.finish(pwc, fuse_bias ? pbc : nullptr);
    }
    if (gb) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < d.K; ++k)
        for (int64_t ch = 0; ch < nch; ++ch) gb[k] += pb[static_cast<size_t>(ch * d.K + k)];
    }
    if (gw) st.reduce(pw.get(), nch, gw);
  }
}

}  // namespace

template <typename T>
void conv2d_backward_cpu(const ConvDims &d, const T *x, const T *w, const T *gy, T *gx, T *gw,
                         T *gb, int threads) {
  if (gw) std::fill(gw, gw + d.w_numel(), T(0));
  if (gb) std::fill(gb, gb + d.K, T(0));
  if (gx && d.N == 0) std::fill(gx, gx + d.x_numel(), T(0));
  if (d.N == 0) return;
  const ConvBackwardPlan plan = choose_conv2d_backward(d, static_cast<int>(sizeof(T)));
  // Both gradients with grad input as a conv: image by image in one parallel region, each
  // image's grad_out read for both while in L2 (the same sums in the same order as below).
  const int64_t img = d.K * d.P();
  if (gx && gw && plan.grad_input == GradInputAlgo::AsConv &&
      conv2d_backward_cpu_images<T>(d, x, w, gx, gw, gb, threads, [&](int64_t n, T *buf) {
        std::memcpy(buf, gy + n * img, sizeof(T) * static_cast<size_t>(img));
      }))
    return;
  if (gx && plan.grad_input == GradInputAlgo::AsConv)
    grad_input_by_conv(d, w, gy, gx, threads);
  else if (gx)
    grad_input_by_gemm_col2im(d, w, gy, gx, threads);
  if (!gw && !gb) return;
  switch (plan.grad_weight) {
    case GradWeightAlgo::TapRows8x2:
      grad_weight_bias(d, WgradTapRows<T, 8, 2>(d), x, gy, gw, gb, threads);
      break;
    case GradWeightAlgo::TapRows8x3:
      grad_weight_bias(d, WgradTapRows<T, 8, 3>(d), x, gy, gw, gb, threads);
      break;
    case GradWeightAlgo::TransposedGemm8x3:
      grad_weight_bias(d, WgradTransposed<T, 8, 3>(d), x, gy, gw, gb, threads);
      break;
    case GradWeightAlgo::TransposedGemm12x2:
      grad_weight_bias(d, WgradTransposed<T, 12, 2>(d), x, gy, gw, gb, threads);
      break;
    case GradWeightAlgo::TransposedGemm10x2:
      grad_weight_bias(d, WgradTransposed<T, 10, 2>(d), x, gy, gw, gb, threads);
      break;
    case GradWeightAlgo::PixelDot:
      grad_weight_bias(d, WgradPixelDot<T>(d), x, gy, gw, gb, threads);
      break;
    default:
      grad_weight_bias(d, WgradIm2col<T>(d), x, gy, gw, gb, threads);
  }
}

template <typename T>
bool conv2d_backward_cpu_images(const ConvDims &d, const T *x, const T *w, T *gx, T *gw,
                                T *gb, int threads,
                                const std::function<void(int64_t, T *)> &source) {
  const ConvBackwardPlan plan = choose_conv2d_backward(d, static_cast<int>(sizeof(T)));
  if (d.N == 0 || (gx && plan.grad_input != GradInputAlgo::AsConv)) return false;
  if (gw) std::fill(gw, gw + d.w_numel(), T(0));
  if (gb) std::fill(gb, gb + d.K, T(0));
  std::unique_ptr<GradInputConv<T>> gi(gx ? new GradInputConv<T>(d, w) : nullptr);
  switch (plan.grad_weight) {
    case GradWeightAlgo::TapRows8x2:
      backward_by_image(d, WgradTapRows<T, 8, 2>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    case GradWeightAlgo::TapRows8x3:
      backward_by_image(d, WgradTapRows<T, 8, 3>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    case GradWeightAlgo::TransposedGemm8x3:
      backward_by_image(d, WgradTransposed<T, 8, 3>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    case GradWeightAlgo::TransposedGemm12x2:
      backward_by_image(d, WgradTransposed<T, 12, 2>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    case GradWeightAlgo::TransposedGemm10x2:
      backward_by_image(d, WgradTransposed<T, 10, 2>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    case GradWeightAlgo::PixelDot:
      backward_by_image(d, WgradPixelDot<T>(d), gi.get(), x, gx, gw, gb, threads, source);
      break;
    default:
      backward_by_image(d, WgradIm2col<T>(d), gi.get(), x, gx, gw, gb, threads, source);
  }
  return true;
}

template bool conv2d_backward_cpu_images<float>(const ConvDims &, const float *, const float *,
                                                float *, float *, float *, int,
                                                const std::function<void(int64_t, float *)> &);
template bool conv2d_backward_cpu_images<double>(const ConvDims &, const double *,
                                                 const double *, double *, double *, double *,
                                                 int,
                                                 const std::function<void(int64_t, double *)> &);
template void conv2d_forward_cpu<float>(const ConvDims &, const float *, const float *,
                                        const float *, float *, int);
template void conv2d_forward_cpu<double>(const ConvDims &, const double *, const double *,
                                         const double *, double *, int);
template void conv2d_forward_cpu_images<float>(const ConvDims &, const float *, const float *,
                                               const float *, int,
                                               const std::function<void(int64_t, float *)> &);
template void conv2d_forward_cpu_images<double>(const ConvDims &, const double *,
                                                const double *, const double *, int,
                                                const std::function<void(int64_t, double *)> &);
template void conv2d_backward_cpu<float>(const ConvDims &, const float *, const float *,
                                         const float *, float *, float *, float *, int);
template void conv2d_backward_cpu<double>(const ConvDims &, const double *, const double *,
                                          const double *, double *, double *, double *, int);

}  // namespace dlsys
