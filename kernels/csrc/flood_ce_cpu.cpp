// Optimised CPU fused cross-entropy with flooding (formulas in flood_ce.h).
//
// Forward, per row (OpenMP over rows): a max pass and a sum-of-exp pass over the row (both
// vectorised; a row of 1000 floats is 4 KB and stays in L1 between them), then m, log-sum and
// the row loss. Row losses are summed in fixed chunks of kChunk rows and the chunk sums added in
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

// m = max of the row and ls = log sum exp(row - m). A NaN anywhere in the row makes the sum
// NaN (exp(NaN) = NaN), so the loss is NaN, as in torch.
template <typename T>
inline void row_stats(const T *row, int64_t C, T &m_out, T &ls_out) {
  T m = row[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < C; ++j) m = row[j] > m ? row[j] : m;
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < C; ++j) s += vexp(row[j] - m);
  m_out = m;
  ls_out = std::log(s);
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
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    double acc = 0.0;
    int64_t c = 0;
    const int64_t end = std::min(N, (ch + 1) * kChunk);
    for (int64_t i = ch * kChunk; i < end; ++i) {
      const T *row = x + i * C;  // row is (C,)
      T m, ls;
      row_stats(row, C, m, ls);
      rows[2 * i] = m;
      rows[2 * i + 1] = ls;
      T li = 0;
      if (t[i] != d.ignore_index) {
        li = (m - row[t[i]]) + ls;
        ++c;
      }
      if (d.reduction == Reduction::None) loss[i] = li;
      acc += static_cast<double>(li);
    }
    part[static_cast<size_t>(ch)] = acc;
    cnt[static_cast<size_t>(ch)] = c;
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
  const bool par = N * C >= kParallelMin && threads > 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
  for (int64_t i = 0; i < N; ++i) {
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
