// 2-D convolution, NCHW, groups, asymmetric zero padding, stride and dilation.
//
// Shapes (all tensors contiguous, row-major):
//   x  is (N, C, H, W)            input
//   w  is (K, C/G, R, S)          weight, G groups; output channel k reads group k / (K/G)
//   b  is (K,)                    bias (optional)
//   y  is (N, K, OH, OW)          output
//   OH = (H + pad_top + pad_bottom - dil_h*(R-1) - 1) / stride_h + 1   (same for OW)
//   y[n,k,oh,ow] = b[k] + sum_{c in group, r, s} w[k,c,r,s] * x[n, g*C/G + c, ih, iw]
//     with ih = oh*stride_h - pad_top + r*dil_h, iw = ow*stride_w - pad_left + s*dil_w
//     (x is zero outside [0,H) x [0,W)).
//
// Implementations, each validated against the reference (tests/kernels):
//   conv2d_ref.cpp   plain loops, the definition above written out
//   conv2d_cpu.cpp   packed GEMM: im2col panels + register-tiled micro-kernel, OpenMP
//   conv2d_cuda.cu   tiled implicit GEMM in shared memory (float32)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dlsys {

struct ConvDims {
  int64_t N, C, H, W;     // input
  int64_t K, R, S;        // output channels, kernel height, kernel width
  int64_t OH, OW;         // output height, width
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right;
  int64_t dil_h, dil_w;
  int64_t G;              // groups

  int64_t Cg() const { return C / G; }   // input channels per group
  int64_t Kg() const { return K / G; }   // output channels per group
  int64_t CRS() const { return Cg() * R * S; }  // reduction length of one output value
  int64_t P() const { return OH * OW; }  // output pixels per image and channel
  int64_t x_numel() const { return N * C * H * W; }
  int64_t w_numel() const { return K * Cg() * R * S; }
  int64_t y_numel() const { return N * K * OH * OW; }
};

// Build ConvDims from the flat list Python passes (order: N C H W K R S OH OW stride_h stride_w
// pad_top pad_bottom pad_left pad_right dil_h dil_w G) and check every relation between them.
// Throws std::invalid_argument naming the field on any inconsistency.
ConvDims conv_dims_from(const std::vector<int64_t> &v);

// Reference (readable loops). b, gx, gw, gb may be null: null outputs are not computed.
template <typename T>
void conv2d_forward_ref(const ConvDims &d, const T *x, const T *w, const T *b, T *y);
template <typename T>
void conv2d_backward_ref(const ConvDims &d, const T *x, const T *w, const T *gy, T *gx, T *gw,
                         T *gb);

// The optimised CPU forward's paths, picked per shape by choose_conv2d_forward: a 1x1 conv
// as one GEMM on the input, an implicit GEMM over shifted copies of the input (pixels in the
// vector lanes), the output channels in the lanes (conv2d_lanes.h), or im2col + GEMM.
enum class ForwardAlgo { Direct1x1, ImplicitGemm, Lanes, Im2colGemm };
ForwardAlgo choose_conv2d_forward(const ConvDims &d, int elem_bytes);
const char *algo_name(ForwardAlgo a);

// The optimised CPU backward's strategies, picked per shape by choose_conv2d_backward
// (elem_bytes: 4 for float32, 8 for float64); see conv2d_cpu.cpp for what each does.
enum class GradInputAlgo { AsConv, GemmCol2im };
enum class GradWeightAlgo {
  TapRows8x2,
  TapRows8x3,
  TransposedGemm8x3,
  TransposedGemm12x2,
  TransposedGemm10x2,
  PixelDot,
  Im2colGemm
};
struct ConvBackwardPlan {
  GradInputAlgo grad_input = GradInputAlgo::GemmCol2im;
  GradWeightAlgo grad_weight = GradWeightAlgo::Im2colGemm;
};
ConvBackwardPlan choose_conv2d_backward(const ConvDims &d, int elem_bytes);
const char *algo_name(GradInputAlgo a);
const char *algo_name(GradWeightAlgo a);

// Optimised CPU (OpenMP with `threads` threads).
template <typename T>
void conv2d_forward_cpu(const ConvDims &d, const T *x, const T *w, const T *b, T *y, int threads);
// The forward image by image: image n's output (K, OH, OW), bias added, is computed into a
// buffer of the OpenMP thread that owns n (it stays in cache) and handed to sink(n, buffer),
// which runs on that thread (concurrently for different images) and may overwrite it.
template <typename T>
void conv2d_forward_cpu_images(const ConvDims &d, const T *x, const T *w, const T *b,
                               int threads, const std::function<void(int64_t, T *)> &sink);
template <typename T>
void conv2d_backward_cpu(const ConvDims &d, const T *x, const T *w, const T *gy, T *gx, T *gw,
                         T *gb, int threads);
// The backward image by image: image n's output gradient (K, OH, OW) is written by
// source(n, buffer) into a buffer of the OpenMP thread that owns n, and read for grad input
// and grad weight while it is in cache (one parallel region for the whole batch). Returns
// false, computing nothing, where the grad input's path is not AsConv (the caller then
// builds the output gradient and calls conv2d_backward_cpu). Same results, bitwise, for any
// thread count.
template <typename T>
bool conv2d_backward_cpu_images(const ConvDims &d, const T *x, const T *w, T *gx, T *gw,
                                T *gb, int threads,
                                const std::function<void(int64_t, T *)> &source);

// Whether p is an output block of the cache of out_pool.cpp that was written before (its
// pages are mapped, so prefaulting them would only walk the page table).
bool out_pool_mapped(const void *p);

#if DLSYS_WITH_CUDA
// CUDA float32, launched on `stream` (a cudaStream_t passed as an integer). Throws
// std::runtime_error on a launch error.
void conv2d_forward_cuda(const ConvDims &d, const float *x, const float *w, const float *b,
                         float *y, uintptr_t stream);
void conv2d_backward_cuda(const ConvDims &d, const float *x, const float *w, const float *gy,
                          float *gx, float *gw, float *gb, uintptr_t stream);
#endif

}  // namespace dlsys
