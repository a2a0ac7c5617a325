// What the compiled module was built with, and what it can see now.
#pragma once

#include <string>
#include <vector>

namespace dlsys {

struct CudaDevice {
  int index;
  std::string name;
  int major;
  int minor;
  long long total_memory_bytes;
  int multiprocessors;
};

// Number of OpenMP threads a parallel region would use now (omp_get_max_threads()).
int omp_max_threads();
// Set the OpenMP thread count for later parallel regions (must be >= 1).
void omp_set_threads(int n);

// True when the CUDA sources were compiled into this module.
bool cuda_compiled();
// CUDA devices visible now; empty when CUDA is not compiled or no driver/device is present.
// `error` receives the CUDA runtime's message when the query failed (e.g. no driver).
std::vector<CudaDevice> cuda_devices(std::string &error);
// CUDA runtime version the module was linked against (e.g. 13000), 0 without CUDA.
int cuda_runtime_version();

}  // namespace dlsys
