// Python bindings of the conv2d and flooding cross-entropy kernels.
//
// A tensor crosses as a pair (data pointer as an integer, number of elements); the C++ side
// re-checks every element count against the shapes before it touches memory, so a wrong call
// from Python raises ValueError instead of reading out of bounds. `impl` picks the version:
// "ref" (plain loops), "cpu" (optimised, OpenMP with `threads` threads) or "cuda" (float32 on
// the CUDA stream `stream` of device `device`). The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bind_ops.h"
#include "conv2d.h"
#include "conv_relu_pool.h"
#include "flood_ce.h"

namespace py = pybind11;

namespace dlsys {

namespace {

using Buf = std::pair<uintptr_t, int64_t>;  // (data pointer, number of elements)

void need(bool ok, const std::string &what) {
  if (!ok) throw std::invalid_argument(what);
}

// Check a buffer: `expected` elements, non-null when it has any. optional: pointer 0 = absent.
template <typename T>
T *as(const Buf &b, int64_t expected, const char *name, bool optional = false) {
  if (optional && b.first == 0) return nullptr;
  need(b.second == expected, std::string(name) + ": expected " + std::to_string(expected) +
                                 " elements, got " + std::to_string(b.second));
  need(expected == 0 || b.first != 0, std::string(name) + ": null data pointer");
  return reinterpret_cast<T *>(b.first);
}

enum class Impl { Ref, Cpu, Cuda };

Impl parse(const std::string &impl, const std::string &dtype, int threads) {
  Impl out;
  if (impl == "ref") {
    out = Impl::Ref;
  } else if (impl == "cpu") {
    out = Impl::Cpu;
  } else if (impl == "cuda") {
#if DLSYS_WITH_CUDA
    out = Impl::Cuda;
#else
    throw std::invalid_argument("impl='cuda': CUDA was not compiled into this build");
#endif
  } else {
    throw std::invalid_argument("impl must be 'ref', 'cpu' or 'cuda', got '" + impl + "'");
  }
  need(dtype == "float32" || dtype == "float64",
       "dtype must be 'float32' or 'float64', got '" + dtype + "'");
  need(!(out == Impl::Cuda && dtype != "float32"),
       "the CUDA kernels support float32 only, got '" + dtype + "'");
  need(threads >= 1, "threads must be >= 1, got " + std::to_string(threads));
  return out;
}

template <typename T>
void conv_fwd(Impl impl, const ConvDims &d, const Buf &x, const Buf &w, const Buf &b, const Buf &y,
              int threads, int device, uintptr_t stream) {
  const T *px = as<T>(x, d.x_numel(), "x");
  const T *pw = as<T>(w, d.w_numel(), "weight");
  const T *pb = as<T>(b, d.K, "bias", true);
  T *py_ = as<T>(y, d.y_numel(), "out");
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    conv2d_forward_ref<T>(d, px, pw, pb, py_);
  } else if (impl == Impl::Cpu) {
    conv2d_forward_cpu<T>(d, px, pw, pb, py_, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      conv2d_forward_cuda(d, px, pw, pb, py_, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

template <typename T>
void conv_bwd(Impl impl, const ConvDims &d, const Buf &x, const Buf &w, const Buf &gy,
              const Buf &gx, const Buf &gw, const Buf &gb, int threads, int device,
              uintptr_t stream) {
  const T *pgy = as<T>(gy, d.y_numel(), "grad_out");
  T *pgx = as<T>(gx, d.x_numel(), "grad_input", true);
  T *pgw = as<T>(gw, d.w_numel(), "grad_weight", true);
  T *pgb = as<T>(gb, d.K, "grad_bias", true);
  // x is read only for grad_weight, weight only for grad_input.
  const T *px = pgw ? as<T>(x, d.x_numel(), "x") : nullptr;
  const T *pw = pgx ? as<T>(w, d.w_numel(), "weight") : nullptr;
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    conv2d_backward_ref<T>(d, px, pw, pgy, pgx, pgw, pgb);
  } else if (impl == Impl::Cpu) {
    conv2d_backward_cpu<T>(d, px, pw, pgy, pgx, pgw, pgb, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      conv2d_backward_cuda(d, px, pw, pgy, pgx, pgw, pgb, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

template <typename T>
void crp_fwd(Impl impl, const ConvDims &d, const PoolDims &p, const Buf &x, const Buf &w,
             const Buf &b, const Buf &out, const Buf &arg, int threads, int device,
             uintptr_t stream) {
  const T *px = as<T>(x, d.x_numel(), "x");
  const T *pw = as<T>(w, d.w_numel(), "weight");
  const T *pb = as<T>(b, d.K, "bias", true);
  T *po = as<T>(out, crp_out_numel(d, p), "out");
  uint8_t *pa = as<uint8_t>(arg, crp_out_numel(d, p), "argmax");
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    conv_relu_pool_forward_ref<T>(d, p, px, pw, pb, po, pa);
  } else if (impl == Impl::Cpu) {
    conv_relu_pool_forward_cpu<T>(d, p, px, pw, pb, po, pa, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      conv_relu_pool_forward_cuda(d, p, px, pw, pb, po, pa, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

template <typename T>
void crp_bwd(Impl impl, const ConvDims &d, const PoolDims &p, const Buf &x, const Buf &w,
             const Buf &gout, const Buf &out, const Buf &arg, const Buf &gx, const Buf &gw,
             const Buf &gb, int threads, int device, uintptr_t stream) {
  const T *pgo = as<T>(gout, crp_out_numel(d, p), "grad_out");
  const T *po = as<T>(out, crp_out_numel(d, p), "out");
  const uint8_t *pa = as<const uint8_t>(arg, crp_out_numel(d, p), "argmax");
  T *pgx = as<T>(gx, d.x_numel(), "grad_input", true);
  T *pgw = as<T>(gw, d.w_numel(), "grad_weight", true);
  T *pgb = as<T>(gb, d.K, "grad_bias", true);
  const T *px = pgw ? as<T>(x, d.x_numel(), "x") : nullptr;
  const T *pw = pgx ? as<T>(w, d.w_numel(), "weight") : nullptr;
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    conv_relu_pool_backward_ref<T>(d, p, px, pw, pgo, po, pa, pgx, pgw, pgb);
  } else if (impl == Impl::Cpu) {
    conv_relu_pool_backward_cpu<T>(d, p, px, pw, pgo, po, pa, pgx, pgw, pgb, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      conv_relu_pool_backward_cuda(d, p, px, pw, pgo, po, pa, pgx, pgw, pgb, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

FloodDims flood_dims(int64_t N, int64_t C, double b, int reduction, int64_t ignore_index) {
  need(N >= 0, "flooding_cross_entropy: N must be >= 0, got " + std::to_string(N));
  need(C >= 1, "flooding_cross_entropy: C must be >= 1, got " + std::to_string(C));
  need(std::isfinite(b) && b >= 0.0, "flooding_cross_entropy: b must be finite and >= 0");
  need(reduction >= 0 && reduction <= 2, "flooding_cross_entropy: reduction code must be 0..2");
  need(!(reduction == 0 && b != 0.0),
       "flooding_cross_entropy: reduction='none' needs b=0 (flooding acts on the batch loss)");
  need(N < (int64_t{1} << 31) && N * C < (int64_t{1} << 40),
       "flooding_cross_entropy: tensor too large");
  return FloodDims{N, C, b, static_cast<Reduction>(reduction), ignore_index};
}

template <typename T>
void flood_fwd(Impl impl, const FloodDims &d, const Buf &x, const Buf &t, const Buf &loss,
               const Buf &rows, const Buf &stats, int threads, int device, uintptr_t stream) {
  const T *px = as<T>(x, d.N * d.C, "logits");
  const int64_t *pt = as<const int64_t>(t, d.N, "target");
  T *pl = as<T>(loss, d.reduction == Reduction::None ? d.N : 1, "loss");
  T *prows = as<T>(rows, 2 * d.N, "rows");
  T *ps = as<T>(stats, 2, "stats");
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    flood_check_targets(d, pt);
    flood_ce_forward_ref<T>(d, px, pt, pl, prows, ps);
  } else if (impl == Impl::Cpu) {
    flood_check_targets(d, pt);
    flood_ce_forward_cpu<T>(d, px, pt, pl, prows, ps, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      flood_ce_forward_cuda(d, px, pt, pl, prows, ps, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

template <typename T>
void flood_bwd(Impl impl, const FloodDims &d, const Buf &gloss, const Buf &x, const Buf &t,
               const Buf &rows, const Buf &stats, const Buf &gx, int threads, int device,
               uintptr_t stream) {
  const T *pg = as<T>(gloss, d.reduction == Reduction::None ? d.N : 1, "grad_loss");
  const T *px = as<T>(x, d.N * d.C, "logits");
  const int64_t *pt = as<const int64_t>(t, d.N, "target");
  const T *prows = as<T>(rows, 2 * d.N, "rows");
  const T *ps = as<T>(stats, 2, "stats");
  T *pgx = as<T>(gx, d.N * d.C, "grad_logits");
  py::gil_scoped_release release;
  if (impl == Impl::Ref) {
    flood_check_targets(d, pt);
    flood_ce_backward_ref<T>(d, pg, px, pt, prows, ps, pgx);
  } else if (impl == Impl::Cpu) {
    flood_check_targets(d, pt);
    flood_ce_backward_cpu<T>(d, pg, px, pt, prows, ps, pgx, threads);
  } else {
#if DLSYS_WITH_CUDA
    if constexpr (std::is_same_v<T, float>) {
      cuda_set_device(device);
      flood_ce_backward_cuda(d, pg, px, pt, prows, ps, pgx, stream);
    }
#endif
  }
  (void)device;
  (void)stream;
}

}  // namespace

void bind_ops(py::module_ &m) {
  m.def(
      "conv2d_forward",
      [](const std::string &impl, const std::string &dtype, const Buf &x, const Buf &w,
         const Buf &b, const Buf &y, const std::vector<int64_t> &dims, int threads, int device,
         uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const ConvDims d = conv_dims_from(dims);
        if (dtype == "float32")
          conv_fwd<float>(im, d, x, w, b, y, threads, device, stream);
        else
          conv_fwd<double>(im, d, x, w, b, y, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("x"), py::arg("weight"), py::arg("bias"),
      py::arg("out"), py::arg("dims"), py::arg("threads") = 1, py::arg("device") = -1,
      py::arg("stream") = 0,
      "y = conv2d(x, weight, bias) into `out`. Tensors are (data_ptr, numel) pairs; bias may be "
      "(0, 0). dims = [N C H W K R S OH OW stride_h stride_w pad_top pad_bottom pad_left "
      "pad_right dil_h dil_w groups].");
  m.def(
      "conv2d_backward",
      [](const std::string &impl, const std::string &dtype, const Buf &x, const Buf &w,
         const Buf &gy, const Buf &gx, const Buf &gw, const Buf &gb,
         const std::vector<int64_t> &dims, int threads, int device, uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const ConvDims d = conv_dims_from(dims);
        if (dtype == "float32")
          conv_bwd<float>(im, d, x, w, gy, gx, gw, gb, threads, device, stream);
        else
          conv_bwd<double>(im, d, x, w, gy, gx, gw, gb, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("x"), py::arg("weight"), py::arg("grad_out"),
      py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"), py::arg("dims"),
      py::arg("threads") = 1, py::arg("device") = -1, py::arg("stream") = 0,
      "Gradients of conv2d; a grad buffer given as (0, 0) is not computed (and its input not "
      "read). Every computed gradient is overwritten, not accumulated.");
  m.def(
      "conv2d_backward_plan",
      [](const std::vector<int64_t> &dims, const std::string &dtype) {
        const ConvDims d = conv_dims_from(dims);
        need(dtype == "float32" || dtype == "float64",
             "dtype must be 'float32' or 'float64', got '" + dtype + "'");
        const int elem = dtype == "float32" ? 4 : 8;
        const ConvBackwardPlan plan = choose_conv2d_backward(d, elem);
        py::dict out;
        out["forward"] = algo_name(choose_conv2d_forward(d, elem));
        out["grad_input"] = algo_name(plan.grad_input);
        out["grad_weight"] = algo_name(plan.grad_weight);
        return out;
      },
      py::arg("dims"), py::arg("dtype") = "float32",
      "The paths the optimised CPU forward and backward pick for these conv dims: {'forward': "
      "'direct_1x1' | 'implicit_gemm' | 'channels_in_lanes' | 'im2col_gemm', 'grad_input': "
      "'as_conv' | 'gemm_col2im', 'grad_weight': 'tap_rows_8x2' | 'tap_rows_8x3' | "
      "'transposed_gemm_8x3' | "
      "'transposed_gemm_12x2' | 'transposed_gemm_10x2' | 'pixel_dot' | 'im2col_gemm'}.");
  m.def(
      "conv_relu_pool_forward",
      [](const std::string &impl, const std::string &dtype, const Buf &x, const Buf &w,
         const Buf &b, const Buf &out, const Buf &arg, const std::vector<int64_t> &dims,
         const std::vector<int64_t> &pool, int threads, int device, uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const ConvDims d = conv_dims_from(dims);
        const PoolDims p = pool_dims_from(d, pool);
        if (dtype == "float32")
          crp_fwd<float>(im, d, p, x, w, b, out, arg, threads, device, stream);
        else
          crp_fwd<double>(im, d, p, x, w, b, out, arg, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("x"), py::arg("weight"), py::arg("bias"),
      py::arg("out"), py::arg("argmax"), py::arg("dims"), py::arg("pool"),
      py::arg("threads") = 1, py::arg("device") = -1, py::arg("stream") = 0,
      "out = max_pool2d(relu(conv2d(x, weight, bias))) and its one-byte argmax (uint8) "
      "(see conv_relu_pool.h). dims as conv2d_forward; pool = [KH KW SH SW PH PW QH QW].");
  m.def(
      "conv_relu_pool_backward",
      [](const std::string &impl, const std::string &dtype, const Buf &x, const Buf &w,
         const Buf &gout, const Buf &out, const Buf &arg, const Buf &gx, const Buf &gw,
         const Buf &gb, const std::vector<int64_t> &dims, const std::vector<int64_t> &pool,
         int threads, int device, uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const ConvDims d = conv_dims_from(dims);
        const PoolDims p = pool_dims_from(d, pool);
        if (dtype == "float32")
          crp_bwd<float>(im, d, p, x, w, gout, out, arg, gx, gw, gb, threads, device, stream);
        else
          crp_bwd<double>(im, d, p, x, w, gout, out, arg, gx, gw, gb, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("x"), py::arg("weight"), py::arg("grad_out"),
      py::arg("out"), py::arg("argmax"), py::arg("grad_input"), py::arg("grad_weight"),
      py::arg("grad_bias"), py::arg("dims"), py::arg("pool"), py::arg("threads") = 1,
      py::arg("device") = -1, py::arg("stream") = 0,
      "Gradients of conv_relu_pool_forward from the pooled gradient, the pooled output and the "
      "argmax; a grad buffer given as (0, 0) is not computed. Gradients are overwritten.");
  m.def(
      "flood_ce_forward",
      [](const std::string &impl, const std::string &dtype, const Buf &x, const Buf &t,
         const Buf &loss, const Buf &rows, const Buf &stats, int64_t N, int64_t C, double b,
         int reduction, int64_t ignore_index, int threads, int device, uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const FloodDims d = flood_dims(N, C, b, reduction, ignore_index);
        if (dtype == "float32")
          flood_fwd<float>(im, d, x, t, loss, rows, stats, threads, device, stream);
        else
          flood_fwd<double>(im, d, x, t, loss, rows, stats, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("logits"), py::arg("target"), py::arg("loss"),
      py::arg("rows"), py::arg("stats"), py::arg("N"), py::arg("C"), py::arg("b"),
      py::arg("reduction"), py::arg("ignore_index"), py::arg("threads") = 1,
      py::arg("device") = -1, py::arg("stream") = 0,
      "Fused cross-entropy with flooding (see flood_ce.h). reduction: 0 none, 1 mean, 2 sum.");
  m.def(
      "flood_ce_backward",
      [](const std::string &impl, const std::string &dtype, const Buf &gloss, const Buf &x,
         const Buf &t, const Buf &rows, const Buf &stats, const Buf &gx, int64_t N, int64_t C,
         double b, int reduction, int64_t ignore_index, int threads, int device,
         uintptr_t stream) {
        const Impl im = parse(impl, dtype, threads);
        const FloodDims d = flood_dims(N, C, b, reduction, ignore_index);
        if (dtype == "float32")
          flood_bwd<float>(im, d, gloss, x, t, rows, stats, gx, threads, device, stream);
        else
          flood_bwd<double>(im, d, gloss, x, t, rows, stats, gx, threads, device, stream);
      },
      py::arg("impl"), py::arg("dtype"), py::arg("grad_loss"), py::arg("logits"),
      py::arg("target"), py::arg("rows"), py::arg("stats"), py::arg("grad_logits"), py::arg("N"),
      py::arg("C"), py::arg("b"), py::arg("reduction"), py::arg("ignore_index"),
      py::arg("threads") = 1, py::arg("device") = -1, py::arg("stream") = 0,
      "Gradient of flood_ce_forward's loss with respect to the logits, into grad_logits.");
}

}  // namespace dlsys
