// dlsys.kernels._C: the pybind11 bindings of dlsys's compiled kernels.
//
// Tensors cross this boundary as raw data pointers (integers), shapes and strides; a CUDA
// stream crosses as an integer. Nothing here links libtorch, so one build serves any torch
// version. Every binding that computes releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_ops.h"
#include "build_config.h"
#include "info.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "dlsys compiled kernels (C++/OpenMP, and CUDA when compiled)";

  m.def("build_info", [] {
    py::dict d;
    d["cxx_compiler"] = DLSYS_CXX_COMPILER;
    d["openmp"] = true;
    d["openmp_max_threads"] = dlsys::omp_max_threads();
    d["cuda_compiled"] = dlsys::cuda_compiled();
#if DLSYS_WITH_CUDA
    d["cuda_compiler"] = DLSYS_CUDA_COMPILER;
    d["cuda_architectures"] = DLSYS_CUDA_ARCHS;
#else
    d["cuda_compiler"] = py::none();
    d["cuda_architectures"] = py::none();
#endif
    d["cuda_runtime_version"] = dlsys::cuda_runtime_version();
    return d;
  }, "What this module was compiled with: compilers, OpenMP, CUDA (and for which sm).");

  m.def("omp_max_threads", &dlsys::omp_max_threads,
        "Threads an OpenMP parallel region of this module would use now.");
  m.def("omp_set_threads", &dlsys::omp_set_threads, py::arg("n"),
        "Set the number of OpenMP threads this module's kernels use (n >= 1).");

  m.def("cuda_devices", [] {
    std::string error;
    std::vector<dlsys::CudaDevice> devs;
    {
      py::gil_scoped_release release;
      devs = dlsys::cuda_devices(error);
    }
    py::list out;
    for (const auto &d : devs) {
      py::dict e;
      e["index"] = d.index;
      e["name"] = d.name;
      e["capability"] = py::make_tuple(d.major, d.minor);
      e["total_memory_bytes"] = d.total_memory_bytes;
      e["multiprocessors"] = d.multiprocessors;
      out.append(e);
    }
    return py::make_tuple(out, error);
  }, "CUDA devices visible now as (list of dicts, error message or '').");

  dlsys::bind_ops(m);
  dlsys::bind_out_pool(m);
}
