// Optimised CPU fused cross-entropy with flooding (formulas in flood_ce.h).
//
// Forward, per chunk of 256 rows (OpenMP over chunks): a max pass and a sum-of-exp pass over
// each row (both vectorised; a row of 1000 floats is 4 KB and stays in L1 between them; rows
// narrower than 32 use one flat exp loop over the chunk instead), one vectorised log over the
// chunk's sums, then the row losses. Row losses are summed in fixed chunks of kChunk rows and the chunk sums added in
// order, so the result does not depend on the thread count.
// Backward, per row: dx = s * exp((x - m) - ls) - s * onehot(t): one read of x and one write of dx,
// no softmax tensor is materialised (torch writes log_softmax forward and reads it back).
// Napkin math for (8192, 1000) float32: forward reads 32.8 MB, backward reads 32.8 MB and
// writes 32.8 MB; torch's log_softmax + nll + abs path moves about twice that.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "flood_ce.h"
#include "vec_math.h"

namespace dlsys {

namespace {

constexpr int64_t kChunk = 256;          // rows per partial sum (fixed: determinism)
constexpr int64_t kParallelMin = 16384;  // elements below which one thread is faster
constexpr int64_t kNarrow = 32;          // rows narrower than this go through the flat path

template <typename T>
inline T row_max(const T *row, int64_t C) {
  T m = row[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < C; ++j) m = row[j] > m ? row[j] : m;
  return m;
}

// For rows [i0, i0 + nr): m[r] = max of row r and ls[r] = log sum_j exp(x_rj - m[r]).
// Wide rows: one vectorised exp loop per row. Narrow rows (C < 32, e.g. 10 classes, where a
// per-row loop would be mostly remainder): the shifted values of the whole chunk go into
// `buf` and one flat vectorised exp loop runs over all of them. A NaN anywhere in a row makes
// its sum NaN (exp(NaN) = NaN), so its loss is NaN, as in torch.
template <typename T>
void chunk_stats(const T *x, int64_t C, int64_t nr, T *m, T *ls, T *buf) {
  T s[kChunk];
  for (int64_t r = 0; r < nr; ++r) m[r] = row_max(x + r * C, C);
  if (C >= kNarrow) {
    for (int64_t r = 0; r < nr; ++r) {
      const T *row = x + r * C;
      const T mr = m[r];
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < C; ++j) acc += vexp(row[j] - mr);
      s[r] = acc;
    }
  } else {
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < C; ++j) buf[r * C + j] = x[r * C + j] - m[r];
    const int64_t n = nr * C;
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) buf[k] = vexp(buf[k]);
    for (int64_t r = 0; r < nr; ++r) {
      T acc = 0;
      for (int64_t j = 0; j < C; ++j) acc += buf[r * C + j];
      s[r] = acc;
    }
  }
#pragma omp simd
  for (int64_t r = 0; r < nr; ++r) ls[r] = vlog(s[r]);
}

}  // namespace

template <typename T>
void flood_ce_forward_cpu(const FloodDims &d, const T *x, const int64_t *t, T *loss, T *rows,
                          T *stats, int threads) {
  const int64_t N = d.N, C = d.C;
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(nchunks), 0.0);
  std::vector<int64_t> cnt(static_cast<size_t>(nchunks), 0);
  const bool par = N * C >= kParallelMin && threads > 1;
#pragma omp parallel num_threads(threads) if (par)
  {
    std::vector<T> buf(C < kNarrow ? static_cast<size_t>(kChunk * C) : 0);
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t i0 = ch * kChunk, nr = std::min(N, i0 + kChunk) - i0;
      T m[kChunk], ls[kChunk];
      chunk_stats(x + i0 * C, C, nr, m, ls, buf.data());
      double acc = 0.0;
      int64_t c = 0;
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t i = i0 + r;
        rows[2 * i] = m[r];
        rows[2 * i + 1] = ls[r];
        T li = 0;
        if (t[i] != d.ignore_index) {
          li = (m[r] - x[i * C + t[i]]) + ls[r];
          ++c;
        }
        if (d.reduction == Reduction::None) loss[i] = li;
        acc += static_cast<double>(li);
      }
      part[static_cast<size_t>(ch)] = acc;
      cnt[static_cast<size_t>(ch)] = c;
    }
  }
  double total = 0.0;
  int64_t count = 0;
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    total += part[static_cast<size_t>(ch)];
    count += cnt[static_cast<size_t>(ch)];
  }
  const double R = d.reduction == Reduction::Mean ? total / static_cast<double>(count) : total;
  stats[0] = static_cast<T>(R);
  stats[1] = static_cast<T>(count);
  if (d.reduction != Reduction::None)
    loss[0] = d.b == 0.0 ? static_cast<T>(R) : static_cast<T>(std::fabs(R - d.b) + d.b);
}

template <typename T>
void flood_ce_backward_cpu(const FloodDims &d, const T *gloss, const T *x, const int64_t *t,
                           const T *rows, const T *stats, T *gx, int threads) {
  const int64_t N = d.N, C = d.C;
  T common = 0;
  if (d.reduction != Reduction::None) {
    double scale = static_cast<double>(gloss[0]) * flood_sign(stats[0], d.b);
    if (d.reduction == Reduction::Mean) scale /= static_cast<double>(stats[1]);
    common = static_cast<T>(scale);
  }
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  const bool par = N * C >= kParallelMin && threads > 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = std::min(N, i0 + kChunk);
    if (C >= kNarrow) {
      for (int64_t i = i0; i < i1; ++i) {
        const T *row = x + i * C;
        T *g = gx + i * C;
        const int64_t ti = t[i];
        if (ti == d.ignore_index) {
          std::fill(g, g + C, T(0));
          continue;
        }
        const T s = d.reduction == Reduction::None ? gloss[i] : common;
        const T m = rows[2 * i], ls = rows[2 * i + 1];
#pragma omp simd
        for (int64_t j = 0; j < C; ++j) g[j] = s * vexp((row[j] - m) - ls);
        g[ti] = s * (vexp((row[ti] - m) - ls) - T(1));
      }
    } else {
      // Narrow rows: log-softmax of the chunk into gx, one flat exp loop, then scale per row.
      for (int64_t i = i0; i < i1; ++i) {
        const T m = rows[2 * i], ls = rows[2 * i + 1];
        for (int64_t j = 0; j < C; ++j) gx[i * C + j] = (x[i * C + j] - m) - ls;
      }
      T *g0 = gx + i0 * C;
      const int64_t n = (i1 - i0) * C;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) g0[k] = vexp(g0[k]);
      for (int64_t i = i0; i < i1; ++i) {
        T *g = gx + i * C;
        const int64_t ti = t[i];
        if (ti == d.ignore_index) {
          std::fill(g, g + C, T(0));
          continue;
        }
        const T s = d.reduction == Reduction::None ? gloss[i] : common;
        const T pt = g[ti];
        for (int64_t j = 0; j < C; ++j) g[j] *= s;
        g[ti] = s * (pt - T(1));
      }
    }
  }
}

template void flood_ce_forward_cpu<float>(const FloodDims &, const float *, const int64_t *,
                                          float *, float *, float *, int);
template void flood_ce_forward_cpu<double>(const FloodDims &, const double *, const int64_t *,
                                           double *, double *, double *, int);
template void flood_ce_backward_cpu<float>(const FloodDims &, const float *, const float *,
                                           const int64_t *, const float *, const float *,
                                           float *, int);
template void flood_ce_backward_cpu<double>(const FloodDims &, const double *, const double *,
                                            const int64_t *, const double *, const double *,
                                            double *, int);

}  // namespace dlsys
