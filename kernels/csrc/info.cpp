#include "info.h"

#include <omp.h>

#include <stdexcept>

namespace dlsys {

int omp_max_threads() { return omp_get_max_threads(); }

void omp_set_threads(int n) {
  if (n < 1) throw std::invalid_argument("threads: must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
}

bool cuda_compiled() { return DLSYS_WITH_CUDA != 0; }

#if !DLSYS_WITH_CUDA
std::vector<CudaDevice> cuda_devices(std::string &error) {
  error = "CUDA was not compiled into this build";
  return {};
}
int cuda_runtime_version() { return 0; }
#endif

}  // namespace dlsys
