// Fused cross-entropy with flooding (Ishida et al., ICML 2020).
//
// Shapes: logits x is (N, C) contiguous; target t is (N,) int64; rows is (N, 2) (output, kept
// for the backward): rows[i] = {m_i, ls_i} with m_i = max_j x_ij and ls_i = log sum_j
// exp(x_ij - m_i), so log-softmax is (x_ij - m_i) - ls_i exactly as torch computes it (storing
// lse = m + ls instead would round it to the ulp of m, about 4e-6 for logits near 60);
// stats is (2,) = {R, count} where R is the reduced cross-entropy before flooding and count
// the number of rows whose target is not ignore_index.
//   per-row loss  l_i = (m_i - x[i, t_i]) + ls_i      (0 where t_i == ignore_index)
//   reduction     none: loss (N,) = l;  sum: R = sum_i l_i;  mean: R = sum_i l_i / count
//   flooding      loss = |R - b| + b                 (b = 0: loss = R exactly)
//   gradient      dx[i,j] = s_i * (exp((x_ij - m_i) - ls_i) - [j == t_i]) (0 on ignored rows) with
//                 none: s_i = g_i;  sum: s = g * sgn(R - b);  mean: s = g * sgn(R - b) / count
//                 where sgn(0) = sgn(NaN) = 0 (torch's abs backward), and sgn := 1 when b = 0.
//
// Implementations: flood_ce_ref.cpp (loops), flood_ce_cpu.cpp (OpenMP over rows, one read of
// each row forward, vectorised exp), flood_ce_cuda.cu (warp or block per row, online softmax).
#pragma once

#include <cstdint>

namespace dlsys {

enum class Reduction : int { None = 0, Mean = 1, Sum = 2 };

struct FloodDims {
  int64_t N, C;
  double b;               // flood level, >= 0 and finite (checked in Python and C++)
  Reduction reduction;
  int64_t ignore_index;
};

// Throws std::invalid_argument naming the first target outside [0, C) that is not ignore_index.
void flood_check_targets(const FloodDims &d, const int64_t *t);

// The sign factor of the flooded gradient: 1 when b == 0, otherwise sgn(R - b) with
// sgn(0) = sgn(NaN) = 0.
double flood_sign(double R, double b);

template <typename T>
void flood_ce_forward_ref(const FloodDims &d, const T *x, const int64_t *t, T *loss, T *rows,
                          T *stats);
template <typename T>
void flood_ce_backward_ref(const FloodDims &d, const T *gloss, const T *x, const int64_t *t,
                           const T *rows, const T *stats, T *gx);

template <typename T>
void flood_ce_forward_cpu(const FloodDims &d, const T *x, const int64_t *t, T *loss, T *rows,
                          T *stats, int threads);
template <typename T>
void flood_ce_backward_cpu(const FloodDims &d, const T *gloss, const T *x, const int64_t *t,
                           const T *rows, const T *stats, T *gx, int threads);

#if DLSYS_WITH_CUDA
// CUDA float32 on `stream`; targets must have been range-checked by the caller.
void flood_ce_forward_cuda(const FloodDims &d, const float *x, const int64_t *t, float *loss,
                           float *rows, float *stats, uintptr_t stream);
void flood_ce_backward_cuda(const FloodDims &d, const float *gloss, const float *x,
                            const int64_t *t, const float *rows, const float *stats, float *gx,
                            uintptr_t stream);
#endif

}  // namespace dlsys
