// The CPU forward with the output channels in the vector lanes (stride 1), used by
// conv2d_cpu.cpp where choose_conv2d_forward picks it.
//
// One image and group at a time: the input is copied once into a zero-padded plane per
// channel, xp (Cg, Hp, Wp) with Hp = H + pad_top + pad_bottom, Wp likewise, and the weights
// are packed once per call as wp (Cg, R, S, Kpad): the Kg output channels of a tap
// contiguous, zero-padded to whole vectors. A tile is RT output rows x w output columns x
// NV channel vectors (RT * w * NV <= 28 accumulators): per tap (c, r, s) it loads NV weight
// vectors (aligned) and broadcasts RT * w input values, each broadcast feeding NV FMAs.
// Kernel rows r that fall into the zero padding are skipped, for a 2-row tile row by row (the
// top and bottom rows of a 14x14 map with a 5x5 kernel: 64 of the 70 row taps remain), and
// so are the tile columns that read left or right padding for a kernel column s (up to 2
// at either edge; 64 of 70 column taps remain for 5x5 on 14x14), and no lane is wasted
// when Kg is a multiple of the vector (the flat-pixel implicit GEMM fills 196 of 208 lanes
// of a 14x14 map). The tile is written to NCHW by a transposing store (16 x
// 16 register transposes for float32 with AVX-512, a copy through a small buffer otherwise).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv2d.h"
#include "cpu_gemm.h"

namespace dlsys {
namespace cpu {

// The taps of one kernel column s for a tile, accumulated into acc: every input channel c
// and kernel row r in [r_lo, r_hi), each weight vector loaded once, each input value
// broadcast once and used by NV FMAs. Columns j < LEAD and j >= W - TRAIL of the tile are
// skipped: for this s they read the zero padding left or right of the input row.
// With RT > 1 rows, a row whose input row for this r is padding is skipped as well (the
// range [r_lo, r_hi) is the rows' union).
template <typename T, int NV, int RT, int W, int LEAD, int TRAIL>
__attribute__((always_inline)) inline void lanes_column_taps(
    typename VecType<T>::type (&acc)[RT][W][NV], const ConvDims &d, int64_t Hp, int64_t Wp,
    int64_t Kpad, const T *xs0, const T *ws0, int64_t oh, int64_t r_lo, int64_t r_hi) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  const int64_t R = d.R, S = d.S, dh = d.dil_h;
  for (int64_t c = 0; c < d.Cg(); ++c) {
    const T *xc = xs0 + c * Hp * Wp;
    const T *wc = ws0 + c * R * S * Kpad;
    for (int64_t r = r_lo; r < r_hi; ++r) {
      const T *xs = xc + r * dh * Wp;
      const T *wr = wc + r * S * Kpad;
      V wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = vload(wr + v * VL);
      const int64_t ih = oh - d.pad_top + r * dh;  // input row of the tile's first row
      for (int rr = 0; rr < RT; ++rr) {
        if (RT > 1 && (ih + rr < 0 || ih + rr >= d.H)) continue;
        for (int j = LEAD; j < W - TRAIL; ++j) {
          const V xb = xs[rr * Wp + j] - V{};  // broadcast (x - 0 folds to x)
          for (int v = 0; v < NV; ++v) acc[rr][j][v] += xb * wv[v];
        }
      }
    }
  }
}

// Accumulators of one tile: RT rows x W columns x NV vectors.
// Never inlined, so that its accumulators get the registers whatever the caller.
// The kernel columns s are the outer loop: for each, the tile columns that read only left or
// right padding (up to 2 of them at either edge, a 5x5 kernel's padding of 2) are left out
// at compile time (lanes_column_taps); wider edges compute their zero products.
template <typename T, int NV, int RT, int W>
__attribute__((noinline)) void lanes_tile(const ConvDims &d, int64_t Hp, int64_t Wp, int64_t Kpad,
                                          const T *xp, const T *wp, const T *bias_v, int64_t oh,
                                          int64_t ow0, int64_t r_lo, int64_t r_hi, T *tmp,
                                          T *y, int64_t kc) {
  using V = typename VecType<T>::type;
  constexpr int VL = Vec<T>::VL;
  V acc[RT][W][NV];
  for (int v = 0; v < NV; ++v) {
    const V b = vload(bias_v + v * VL);
    for (int rr = 0; rr < RT; ++rr)
      for (int j = 0; j < W; ++j) acc[rr][j][v] = b;
  }
  const int64_t dw = d.dil_w;
  const T *x0 = xp + oh * Wp + ow0;  // row oh of the padded plane, column ow0
  for (int64_t s = 0; s < d.S; ++s) {
    // tile column j reads input column ow0 + j + s*dw - pad_left: padding before 0 or from W
    const int64_t first = ow0 + s * dw - d.pad_left, last = first + W - 1;
    const int64_t lead = first < 0 ? -first : 0, trail = last >= d.W ? last - d.W + 1 : 0;
    // 1, 2: that many columns lead; 4, 5: 1, 2 trail; 0 (no edge, or both), 3, 6: all
    const int edge = lead > 0 && trail > 0 ? 0
                     : lead > 0            ? static_cast<int>(std::min<int64_t>(lead, 3))
                     : trail > 0           ? 3 + static_cast<int>(std::min<int64_t>(trail, 3))
                                           : 0;
    const T *xs = x0 + s * dw, *ws = wp + s * Kpad;
    if constexpr (W >= 8) {
      switch (edge) {
        case 1:
          lanes_column_taps<T, NV, RT, W, 1, 0>(acc, d, Hp, Wp, Kpad, xs, ws, oh, r_lo, r_hi);
          continue;
        case 2:
          lanes_column_taps<T, NV, RT, W, 2, 0>(acc, d, Hp, Wp, Kpad, xs, ws, oh, r_lo, r_hi);
          continue;
        case 4:
          lanes_column_taps<T, NV, RT, W, 0, 1>(acc, d, Hp, Wp, Kpad, xs, ws, oh, r_lo, r_hi);
          continue;
        case 5:
          lanes_column_taps<T, NV, RT, W, 0, 2>(acc, d, Hp, Wp, Kpad, xs, ws, oh, r_lo, r_hi);
          continue;
        default:
          break;  // no edge, or wider than 2: every column (the padding is zeros)
      }
    }
    lanes_column_taps<T, NV, RT, W, 0, 0>(acc, d, Hp, Wp, Kpad, xs, ws, oh, r_lo, r_hi);
  }
  // y (channels kc of this block, OH, OW) at rows oh.., columns ow0..: the accumulators hold
  // channels in the lanes, NCHW wants pixels along a row: a transposing store.
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4 && W <= 16) {
    const int64_t P = d.OH * d.OW;
    const __mmask16 m = static_cast<__mmask16>((1u << W) - 1u);
    for (int v = 0; v < NV; ++v)
      for (int rr = 0; rr < RT; ++rr) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j)
          r[j] = j < W ? reinterpret_cast<__m512>(acc[rr][j][v]) : _mm512_setzero_ps();
        transpose16(r);  // r[k]: channel v * 16 + k at the W pixels
        const int64_t nk = std::min<int64_t>(16, kc - v * 16);
        T *yr = y + (v * 16) * P + (oh + rr) * d.OW + ow0;
        for (int64_t k = 0; k < nk; ++k) _mm512_mask_storeu_ps(yr + k * P, m, r[k]);
      }
    return;
  }
#endif
  for (int rr = 0; rr < RT; ++rr)
    for (int j = 0; j < W; ++j)
      for (int v = 0; v < NV; ++v) vstore(tmp + ((rr * W + j) * NV + v) * VL, acc[rr][j][v]);
  const int64_t P = d.OH * d.OW, ld = NV * VL;
  for (int64_t k = 0; k < kc; ++k) {
    T *yk = y + k * P + oh * d.OW + ow0;
    for (int rr = 0; rr < RT; ++rr)
      for (int j = 0; j < W; ++j) yk[rr * d.OW + j] = tmp[(rr * W + j) * ld + k];
  }
}

// The tile widths 1..WMAX as a switch (the last chunk of a row is narrower).
template <typename T, int NV, int RT, int W>
struct LanesDispatch {
  static void run(int w, const ConvDims &d, int64_t Hp, int64_t Wp, int64_t Kpad, const T *xp,
                  const T *wp, const T *bias_v, int64_t oh, int64_t ow0, int64_t r_lo,
                  int64_t r_hi, T *tmp, T *y, int64_t kc) {
    if (w == W)
      lanes_tile<T, NV, RT, W>(d, Hp, Wp, Kpad, xp, wp, bias_v, oh, ow0, r_lo, r_hi, tmp, y,
                               kc);
    else
      LanesDispatch<T, NV, RT, W - 1>::run(w, d, Hp, Wp, Kpad, xp, wp, bias_v, oh, ow0, r_lo,
                                           r_hi, tmp, y, kc);
  }
};
template <typename T, int NV, int RT>
struct LanesDispatch<T, NV, RT, 0> {
  static void run(int, const ConvDims &, int64_t, int64_t, int64_t, const T *, const T *,
                  const T *, int64_t, int64_t, int64_t, int64_t, T *, T *, int64_t) {}
};

// Tile sizes: two channel vectors x 14 columns of one row, or one vector x 2 rows x 14.
constexpr int kLanesWMax = 14;

// What every image shares: packed weights and bias per group, padded sizes.
template <typename T>
struct LanesPlan {
  static constexpr int VL = Vec<T>::VL;
  const ConvDims &d;
  int64_t Hp, Wp, Kpad;
  std::vector<T> wp, bp;  // (G, Cg, R, S, Kpad), (G, Kpad)

  LanesPlan(const ConvDims &dims, const T *w, const T *b)
      : d(dims), Hp(dims.H + dims.pad_top + dims.pad_bottom),
        Wp(dims.W + dims.pad_left + dims.pad_right),
        Kpad((dims.Kg() + VL - 1) / VL * VL),
        wp(static_cast<size_t>(dims.G * dims.CRS() * Kpad), T(0)),
        bp(static_cast<size_t>(dims.G * Kpad), T(0)) {
    const int64_t Kg = d.Kg(), CRS = d.CRS();
    for (int64_t g = 0; g < d.G; ++g)
      for (int64_t k = 0; k < Kg; ++k) {
        const T *wk = w + (g * Kg + k) * CRS;
        T *dst = wp.data() + g * CRS * Kpad + k;
        for (int64_t q = 0; q < CRS; ++q) dst[q * Kpad] = wk[q];
        if (b) bp[static_cast<size_t>(g * Kpad + k)] = b[g * Kg + k];
      }
  }

  int64_t xp_size() const { return d.Cg() * Hp * Wp + VL; }
  int64_t tmp_size() const { return 2 * kLanesWMax * 2 * VL; }

  // xp = the zero-padded input planes of one image and group (xg is (Cg, H, W)).
  void pad_input(const T *xg, T *xp) const {
    for (int64_t c = 0; c < d.Cg(); ++c) {
      T *pc = xp + c * Hp * Wp;
      std::fill(pc, pc + d.pad_top * Wp, T(0));
      for (int64_t h = 0; h < d.H; ++h) {
        T *row = pc + (d.pad_top + h) * Wp;
        std::fill(row, row + d.pad_left, T(0));
        std::memcpy(row + d.pad_left, xg + (c * d.H + h) * d.W, sizeof(T) * d.W);
        std::fill(row + d.pad_left + d.W, row + Wp, T(0));
      }
      std::fill(pc + (d.pad_top + d.H) * Wp, pc + Hp * Wp, T(0));
    }
  }

  // Kernel rows [r_lo, r_hi) that reach the input for some output row in [oh, oh + rt).
  void row_range(int64_t oh, int64_t rt, int64_t &r_lo, int64_t &r_hi) const {
    r_lo = d.R;
    r_hi = 0;
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t top = oh - d.pad_top + r * d.dil_h, bottom = top + rt - 1;
      if (bottom >= 0 && top < d.H) {
        r_lo = std::min(r_lo, r);
        r_hi = r + 1;
      }
    }
    if (r_hi <= r_lo) r_lo = r_hi = 0;
  }

  // yg (Kg, OH, OW) of one image and group from its padded input xp.
  void run(const T *xp, int64_t g, T *yg, T *tmp) const {
    const int64_t Kg = d.Kg(), OW = d.OW, P = d.P();
    const int64_t nvec = Kpad / VL;
    const T *wg = wp.data() + g * d.CRS() * Kpad;
    const T *bg = bp.data() + g * Kpad;
    for (int64_t v0 = 0; v0 < nvec;) {
      const int nv = nvec - v0 >= 2 ? 2 : 1;
      const int rt = nv == 2 ? 1 : 2;
      const int64_t kc = std::min<int64_t>(nv * VL, Kg - v0 * VL);
      for (int64_t oh = 0; oh < d.OH; oh += rt) {
        const int rows = static_cast<int>(std::min<int64_t>(rt, d.OH - oh));
        int64_t r_lo, r_hi;
        row_range(oh, rows, r_lo, r_hi);
        for (int64_t ow0 = 0; ow0 < OW; ow0 += kLanesWMax) {
          const int w = static_cast<int>(std::min<int64_t>(kLanesWMax, OW - ow0));
          T *yb = yg + v0 * VL * P;  // this block's first channel
          if (nv == 2)
            LanesDispatch<T, 2, 1, kLanesWMax>::run(w, d, Hp, Wp, Kpad, xp, wg + v0 * VL,
                                                    bg + v0 * VL, oh, ow0, r_lo, r_hi, tmp, yb,
                                                    kc);
          else if (rows == 2)
            LanesDispatch<T, 1, 2, kLanesWMax>::run(w, d, Hp, Wp, Kpad, xp, wg + v0 * VL,
                                                    bg + v0 * VL, oh, ow0, r_lo, r_hi, tmp, yb,
                                                    kc);
          else
            LanesDispatch<T, 1, 1, kLanesWMax>::run(w, d, Hp, Wp, Kpad, xp, wg + v0 * VL,
                                                    bg + v0 * VL, oh, ow0, r_lo, r_hi, tmp, yb,
                                                    kc);
        }
      }
      v0 += nv;
    }
  }
};

}  // namespace cpu
}  // namespace dlsys
