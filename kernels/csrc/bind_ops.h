// Registers the kernel bindings (conv2d_*, flood_ce_*) on the _C module.
#pragma once

#include <pybind11/pybind11.h>

namespace dlsys {

void bind_ops(pybind11::module_ &m);
// Registers pooled_empty and out_pool_stats (out_pool.cpp) on the _C module.
void bind_out_pool(pybind11::module_ &m);

#if DLSYS_WITH_CUDA
// cudaSetDevice(device) for device >= 0; throws std::runtime_error with CUDA's message.
void cuda_set_device(int device);
#endif

}  // namespace dlsys
