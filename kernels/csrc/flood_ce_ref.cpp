// Reference fused cross-entropy with flooding: the formulas of flood_ce.h as plain loops.
#include <cmath>
#include <stdexcept>
#include <string>

#include "flood_ce.h"

namespace dlsys {

void flood_check_targets(const FloodDims &d, const int64_t *t) {
  for (int64_t i = 0; i < d.N; ++i) {
    const int64_t v = t[i];
    if (v != d.ignore_index && (v < 0 || v >= d.C))
      throw std::invalid_argument("flooding_cross_entropy: target[" + std::to_string(i) +
                                  "] = " + std::to_string(v) + " is out of range [0, " +
                                  std::to_string(d.C) + ") and is not ignore_index=" +
                                  std::to_string(d.ignore_index));
  }
}

double flood_sign(double R, double b) {
  if (b == 0.0) return 1.0;
  const double z = R - b;
  return z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0);  // NaN compares false both ways -> 0
}

template <typename T>
void flood_ce_forward_ref(const FloodDims &d, const T *x, const int64_t *t, T *loss, T *rows,
                          T *stats) {
  double total = 0.0;  // sum of per-row losses, rows in order
  int64_t count = 0;
  for (int64_t i = 0; i < d.N; ++i) {
    const T *row = x + i * d.C;  // row is (C,)
    T m = row[0];
    for (int64_t j = 1; j < d.C; ++j) m = row[j] > m ? row[j] : m;
    T s = 0;
    for (int64_t j = 0; j < d.C; ++j) s += std::exp(row[j] - m);
    const T ls = std::log(s);
    rows[2 * i] = m;
    rows[2 * i + 1] = ls;
    T li = 0;
    if (t[i] != d.ignore_index) {
      li = (m - row[t[i]]) + ls;
      ++count;
    }
    if (d.reduction == Reduction::None) loss[i] = li;
    total += static_cast<double>(li);
  }
  const double R = d.reduction == Reduction::Mean ? total / static_cast<double>(count) : total;
  stats[0] = static_cast<T>(R);
  stats[1] = static_cast<T>(count);
  if (d.reduction != Reduction::None)
    loss[0] = d.b == 0.0 ? static_cast<T>(R) : static_cast<T>(std::fabs(R - d.b) + d.b);
}

template <typename T>
void flood_ce_backward_ref(const FloodDims &d, const T *gloss, const T *x, const int64_t *t,
                           const T *rows, const T *stats, T *gx) {
  for (int64_t i = 0; i < d.N; ++i) {
    T s;
    if (d.reduction == Reduction::None) {
      s = gloss[i];
    } else {
      double scale = static_cast<double>(gloss[0]) * flood_sign(stats[0], d.b);
      if (d.reduction == Reduction::Mean) scale /= static_cast<double>(stats[1]);
      s = static_cast<T>(scale);
    }
    for (int64_t j = 0; j < d.C; ++j) {
      T g = 0;
      if (t[i] != d.ignore_index)
        g = s * (std::exp((x[i * d.C + j] - rows[2 * i]) - rows[2 * i + 1]) -
                 (j == t[i] ? T(1) : T(0)));
      gx[i * d.C + j] = g;
    }
  }
}

template void flood_ce_forward_ref<float>(const FloodDims &, const float *, const int64_t *,
                                          float *, float *, float *);
template void flood_ce_forward_ref<double>(const FloodDims &, const double *, const int64_t *,
                                           double *, double *, double *);
template void flood_ce_backward_ref<float>(const FloodDims &, const float *, const float *,
                                           const int64_t *, const float *, const float *,
                                           float *);
template void flood_ce_backward_ref<double>(const FloodDims &, const double *, const double *,
                                            const int64_t *, const double *, const double *,
                                            double *);

}  // namespace dlsys
