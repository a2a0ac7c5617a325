// A cache of large CPU output buffers, handed to torch through DLPack.
//
// Why: a fresh tensor of a few MB (conv layer 1's output is 6.4 MB) comes from glibc, which
// returns freed blocks above its mmap threshold to the kernel (munmap) or trims them off the
// top of the heap, so the next call writes new pages: one page fault per 4 KB page, which on
// a VM costs more than the arithmetic of a first conv layer (docs/kernels.md). Here a freed
// output goes back to this cache instead, and the next output of the same byte size reuses
// it with its pages mapped. torch frees the tensor as it would any other (the DLPack
// deleter, called from whichever thread drops the last reference, with or without the GIL).
//
// Limits: only blocks of at least kMinBytes are cached, at most kMaxBlockBytes each and
// kMaxCachedBytes in all; beyond that a block is freed at once (as torch's own would be).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_ops.h"

namespace py = pybind11;

namespace dlsys {

namespace {

// The DLPack ABI (dlpack.h v0.8, unversioned DLManagedTensor): what torch.from_dlpack reads.
struct DLDevice {
  int32_t device_type;  // kDLCPU = 1
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // kDLFloat = 2
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;  // null: compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(DLManagedTensor *self);
};

constexpr size_t kMinBytes = size_t{1} << 20;
constexpr size_t kMaxBlockBytes = size_t{64} << 20;
constexpr size_t kMaxCachedBytes = size_t{256} << 20;
constexpr size_t kAlign = 4096;  // whole pages, so a block's pages are its own

struct Pool {
  std::mutex m;
  std::multimap<size_t, void *> free_blocks;  // byte size -> block
  std::map<const void *, bool> live;          // handed-out block -> written before (mapped)
  size_t cached_bytes = 0;
  int64_t hits = 0, misses = 0;
};

// Never destroyed: a tensor may be freed during interpreter shutdown, after static
// destructors would have run.
Pool &pool() {
  static Pool *p = new Pool();
  return *p;
}

void *take(size_t bytes) {
  Pool &p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    auto it = p.free_blocks.find(bytes);
    if (it != p.free_blocks.end()) {
      void *block = it->second;
      p.free_blocks.erase(it);
      p.cached_bytes -= bytes;
      ++p.hits;
      p.live[block] = true;
      return block;
    }
    ++p.misses;
  }
  void *block = std::aligned_alloc(kAlign, bytes);
  if (!block) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(p.m);
  p.live[block] = false;
  return block;
}

void give_back(void *block, size_t bytes) {
  Pool &p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    p.live.erase(block);
    if (bytes <= kMaxBlockBytes && p.cached_bytes + bytes <= kMaxCachedBytes) {
      p.free_blocks.emplace(bytes, block);
      p.cached_bytes += bytes;
      return;
    }
  }
  std::free(block);
}

// What a managed tensor owns besides its block: the shape array and the block's size.
struct Owner {
  DLManagedTensor managed;
  std::vector<int64_t> shape;
  size_t bytes;
};

void delete_managed(DLManagedTensor *self) {
  Owner *o = static_cast<Owner *>(self->manager_ctx);
  give_back(self->dl_tensor.data, o->bytes);
  delete o;
}

// A capsule torch.from_dlpack has not consumed still owns its tensor.
void capsule_destructor(PyObject *capsule) {
  if (!PyCapsule_IsValid(capsule, "dltensor")) return;  // consumed: torch owns it
  auto *m = static_cast<DLManagedTensor *>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (m && m->deleter) m->deleter(m);
}

py::object pooled_empty(const std::vector<int64_t> &shape, const std::string &dtype) {
  if (dtype != "float32" && dtype != "float64")
    throw std::invalid_argument("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  const size_t elem = dtype == "float32" ? 4 : 8;
  size_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw std::invalid_argument("shape: sizes must be >= 0");
    if (s > 0 && n > (size_t{1} << 50) / static_cast<size_t>(s))
      throw std::invalid_argument("shape: too many elements");
    n *= static_cast<size_t>(s);
  }
  const size_t used = n * elem;
  if (used < kMinBytes) throw std::invalid_argument("pooled_empty: below the cached size");
  const size_t bytes = (used + kAlign - 1) / kAlign * kAlign;
  auto *o = new Owner{{}, shape, bytes};
  o->managed.dl_tensor.data = take(bytes);
  o->managed.dl_tensor.device = {1, 0};
  o->managed.dl_tensor.ndim = static_cast<int32_t>(shape.size());
  o->managed.dl_tensor.dtype = {2, static_cast<uint8_t>(elem * 8), 1};
  o->managed.dl_tensor.shape = o->shape.data();
  o->managed.dl_tensor.strides = nullptr;
  o->managed.dl_tensor.byte_offset = 0;
  o->managed.manager_ctx = o;
  o->managed.deleter = delete_managed;
  PyObject *cap = PyCapsule_New(&o->managed, "dltensor", capsule_destructor);
  if (!cap) {
    delete_managed(&o->managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// Frees every cached block (the outputs still in use stay theirs); returns the bytes freed.
size_t release_cached() {
  Pool &p = pool();
  std::multimap<size_t, void *> blocks;
  size_t bytes;
  {
    std::lock_guard<std::mutex> lock(p.m);
    blocks.swap(p.free_blocks);
    bytes = p.cached_bytes;
    p.cached_bytes = 0;
  }
  for (auto &kv : blocks) std::free(kv.second);
  return bytes;
}

}  // namespace

bool out_pool_mapped(const void *p) {
  Pool &pl = pool();
  std::lock_guard<std::mutex> lock(pl.m);
  const auto it = pl.live.find(p);
  return it != pl.live.end() && it->second;
}

void bind_out_pool(py::module_ &m) {
  m.def("pooled_empty", &pooled_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialised contiguous CPU tensor of at least 1 MiB as a DLPack capsule "
        "(torch.from_dlpack), its block taken from and given back to the output cache.");
  m.def(
      "out_pool_stats",
      [] {
        Pool &p = pool();
        std::lock_guard<std::mutex> lock(p.m);
        py::dict d;
        d["cached_blocks"] = p.free_blocks.size();
        d["cached_bytes"] = p.cached_bytes;
        d["hits"] = p.hits;
        d["misses"] = p.misses;
        return d;
      },
      "The output cache now: cached_blocks, cached_bytes (bytes), hits and misses (calls).");
  m.def("out_pool_release", &release_cached,
        "Free every cached output block (outputs in use are not touched); the bytes freed.");
}

}  // namespace dlsys
