// Grad weight of a stride-1 conv as a GEMM with the output channels in the vector lanes, over
// output rows read straight from the input (GradWeightAlgo::TapRows*, conv2d_cpu.cpp picks it
// with choose_conv2d_backward).
//
// gwT[q, k] += sum over output pixels (oh, ow) of x[c, ih, iw] * gyT[oh*OW + ow, k] for each
// tap q = (c, r, s), with ih = oh - pad_top + r*dil_h and iw = ow - pad_left + s*dil_w, and
// gyT (P, ldk) one image's grad_out transposed (k zero-padded to ldk). A tile holds NQ taps
// that share the kernel row and column (r, s) (input channels c0 .. c0 + NQ - 1) times NV
// channel vectors: NQ * NV accumulators (8 x 2 = 16, 8 x 3 = 24, 16 x 1 = 16). Because its
// taps share (r, s), the tile runs over exactly the output rows and columns whose input
// pixel is inside the image: no product with the zero padding is computed (64 of 70 rows
// and 64 of 70 columns remain for 5x5 on 14x14; the row-sharing tiles of WgradTransposed
// skip only the rows) and no padded or shifted copy of the input is built (the broadcasts
// read x itself, one image of it in L1/L2). Per pixel: NV aligned vector loads of gyT, NQ
// scalar broadcasts, NQ * NV FMAs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv2d.h"
#include "cpu_gemm.h"

namespace dlsys {
namespace cpu {

// Adds per-chunk partial grad weights into gw (G x Kg x C/G x R x S), the chunks in order (so
// the sum does not depend on the thread count). pw holds nch chunks of G groups x rows x ldk;
// row q of a group holds tap q's sums for the group's Kg output channels. A worksharing loop:
// called inside the grad-weight strategies' parallel region (their reduce()).
template <typename T>
void reduce_wgrad_partials(const ConvDims &d, const T *pw, int64_t nch, int64_t rows,
                           int64_t ldk, T *gw) {
  const int64_t Kg = d.Kg(), CRS = d.CRS(), part = d.G * rows * ldk;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < CRS; ++q)
    for (int64_t g = 0; g < d.G; ++g)
      for (int64_t ch = 0; ch < nch; ++ch) {
        const T *src = pw + ch * part + g * rows * ldk + q * ldk;
        T *dst = gw + g * Kg * CRS + q;
        for (int64_t k = 0; k < Kg; ++k) dst[k * CRS] += src[k];
      }
}

// acc (NQ taps x NV vectors, rows out[i] of gwT) += products over rows x cols pixels: tap i
// reads xq[i][a * W + b], the pixel's gyT row is gyT[(a * OW + b) * ldk].
// NOTE: never inlined, so that the accumulators keep their registers whatever the caller.
template <typename T, int NQ, int NV>
__attribute__((noinline)) void wgrad_rows_tile(const T *const *xq, int64_t W, const T *gyT,
                                               int64_t OW, int64_t ldk, int64_t rows,
                                               int64_t cols, T *const *out) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  V acc[NQ][NV];
  const T *xr[NQ];
  for (int i = 0; i < NQ; ++i) {
    xr[i] = xq[i];
    for (int v = 0; v < NV; ++v) acc[i][v] = vload(out[i] + v * VL);
  }
  for (int64_t a = 0; a < rows; ++a) {
    const T *g = gyT + a * OW * ldk;
    for (int64_t b = 0; b < cols; ++b) {
      V gv[NV];
      for (int v = 0; v < NV; ++v) gv[v] = vload(g + b * ldk + v * VL);
      for (int i = 0; i < NQ; ++i) {
        const V xb = xr[i][b] - V{};  // broadcast (x - 0 folds to x)
        for (int v = 0; v < NV; ++v) acc[i][v] += xb * gv[v];
      }
    }
    for (int i = 0; i < NQ; ++i) xr[i] += W;
  }
  for (int i = 0; i < NQ; ++i)
    for (int v = 0; v < NV; ++v) vstore(out[i] + v * VL, acc[i][v]);
}

// The strategy (the interface of conv2d_cpu.cpp's grad weight strategies): per chunk of the
// batch a partial gwT (CRS + 1 rows x ldk per group; row CRS is the scratch row of the
// dummy taps that fill a tile when NQ does not divide C/G), the grad bias from the
// transposed grad_out, reduced into gw (K, C/G, R, S) in chunk order.
template <typename T, int NQ, int NV>
struct WgradTapRows {
  static constexpr int VL = Vec<T>::VL;
  static constexpr bool fuses_bias = true;
  struct Tile {
    int64_t oh0, rows, ow0, cols;  // the output pixels whose input pixel exists
    int64_t x_off[NQ];             // x of tap i at pixel (oh0, ow0), within one image+group
    int64_t q[NQ];                 // rows of gwT (CRS for a dummy tap)
  };
  const ConvDims &d;
  int64_t ldk, rows_per_group;
  std::vector<Tile> tiles;

  explicit WgradTapRows(const ConvDims &dims)
      : d(dims), ldk(((dims.Kg() + VL - 1) / VL + NV - 1) / NV * NV * VL),
        rows_per_group(dims.CRS() + 1) {
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t lo = std::clamp<int64_t>(d.pad_top - r * d.dil_h, 0, d.OH);
      const int64_t hi = std::clamp<int64_t>(d.H + d.pad_top - r * d.dil_h, lo, d.OH);
      for (int64_t s = 0; s < d.S; ++s) {
        int64_t clo, chi;
        valid_range(s * d.dil_w - d.pad_left, 1, d.W, d.OW, clo, chi);
        if (hi <= lo || chi <= clo) continue;  // this tap only ever reads padding
        const int64_t ih = lo - d.pad_top + r * d.dil_h, iw = clo - d.pad_left + s * d.dil_w;
        for (int64_t c0 = 0; c0 < d.Cg(); c0 += NQ) {
          Tile t{lo, hi - lo, clo, chi - clo, {}, {}};
          for (int i = 0; i < NQ; ++i) {
            const bool real = c0 + i < d.Cg();
            const int64_t c = real ? c0 + i : c0;  // a dummy reads tap c0's pixels
            t.x_off[i] = (c * d.H + ih) * d.W + iw;
            t.q[i] = real ? (c * d.R + r) * d.S + s : d.CRS();
          }
          tiles.push_back(t);
        }
      }
    }
  }
  int64_t partial_size() const { return d.G * rows_per_group * ldk; }
  struct Scratch {
    Aligned<T> gyT;
    explicit Scratch(const WgradTapRows &st) : gyT(st.d.P() * st.ldk) {}
  };
  void start(T *pw) const { std::fill(pw, pw + partial_size(), T(0)); }
  // Images [n0, n1), image n's grad_out at gyb + (n - n0) * K * P.
  void add(const T *x, const T *gyb, int64_t n0, int64_t n1, T *pw, T *pb, Scratch &sc) const {
    const int64_t Kg = d.Kg(), P = d.P();
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < d.G; ++g) {
        const T *xg = x + (n * d.C + g * d.Cg()) * d.H * d.W;  // (Cg, H, W)
        T *gt = sc.gyT.data();
        transpose_rows(Kg, P, gyb + ((n - n0) * d.K + g * Kg) * P, ldk, gt);
        if (pb) {  // grad bias from the transposed copy, in L1
          T *bk = pb + g * Kg;
          for (int64_t p = 0; p < P; ++p)
#pragma omp simd
            for (int64_t k = 0; k < Kg; ++k) bk[k] += gt[p * ldk + k];
        }
        T *gw = pw + g * rows_per_group * ldk;
        for (int64_t kv = 0; kv < ldk; kv += NV * VL)  // the gyT slice stays in L1
          for (const Tile &t : tiles) {
            const T *xq[NQ];
            T *out[NQ];
            for (int i = 0; i < NQ; ++i) {
              xq[i] = xg + t.x_off[i];
              out[i] = gw + t.q[i] * ldk + kv;
            }
            wgrad_rows_tile<T, NQ, NV>(xq, d.W, gt + (t.oh0 * d.OW + t.ow0) * ldk + kv, d.OW,
                                       ldk, t.rows, t.cols, out);
          }
      }
  }
  void finish(T *, T *) const {}
  void reduce(const T *pw, int64_t nch, T *gw) const {
    reduce_wgrad_partials(d, pw, nch, rows_per_group, ldk, gw);
  }
};

}  // namespace cpu
}  // namespace dlsys
