// CUDA half of info.h: device queries through the (statically linked) CUDA runtime.
// On a machine without a driver, cudaGetDeviceCount fails cleanly and we report no devices.
#include <cuda_runtime.h>

#include "info.h"

namespace dlsys {

std::vector<CudaDevice> cuda_devices(std::string &error) {
  std::vector<CudaDevice> out;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    error = cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    out.push_back(CudaDevice{i, prop.name, prop.major, prop.minor,
                             static_cast<long long>(prop.totalGlobalMem), prop.multiProcessorCount});
  }
  return out;
}

int cuda_runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace dlsys
