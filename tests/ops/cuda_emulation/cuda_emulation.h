// A host emulation of CUDA's execution model, enough to run the project's own kernels
// (csrc/*/*_kernels.cuh) on a CPU, unchanged, and check them against the CPU ops.
//
// What it models:
// - A launch runs its blocks one after another in a shuffled order; the threads of a block are
//   fibers (ucontext) on one OS thread, resumed in a shuffled order (seeded) between barriers,
//   so that a result which depends on the order of threads (a missing __syncthreads, a race on
//   shared memory) shows up as a difference between seeds or from the reference.
// - __syncthreads: every live thread of the block must arrive at the same call site; a thread
//   that has exited while others still wait, or threads waiting at different sites, is a
//   violation (undefined behaviour in CUDA); a block where no thread can go on is a deadlock.
// - Warp shuffles (__shfl_sync, __shfl_up_sync): the lanes of the mask must all be alive and
//   call the same shuffle at the same site; each gets the value its source lane passed.
// - __shared__ variables are function statics (one copy, shared by the block's threads; blocks
//   run one at a time); the dynamic shared memory is filled with a garbage pattern per block.
// - "Device" buffers (emu::Buffer) sit flush against an inaccessible guard page, with one more
//   before them, so an access past either end faults (SIGSEGV: the runner dies), and the few
//   bytes of alignment slack are canaries checked when the buffer is freed. Buffers that
//   at::empty would leave uninitialised are filled with a garbage pattern, so a kernel that
//   reads what it never wrote gets nonsense rather than zeros.
// - Atomics are plain read-modify-writes (one OS thread); their order is the shuffled order
//   of the threads, as unpredictable as on a GPU.
// - __d*_rn are the plain operations: the runner is compiled with -ffp-contract=off, so
//   nothing is fused, as on the device.
// Not modelled: the memory model beyond barriers (no stale reads), warp-synchronous code
// without shuffles, timing, occupancy, launch limits other than the block size.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

// ---- the built-in variables and types ------------------------------------------------------
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define FRCNN_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::emu::dynamic_shared())

namespace emu {

// ---- violations: collected, printed by the runner, fail the test ---------------------------
inline std::vector<std::string> violations;
inline long violation_count = 0;
inline void violation(const std::string& what) {
  ++violation_count;
  if (violations.size() < 50) violations.push_back(what);
}

inline std::mt19937_64& rng() {
  static std::mt19937_64 g(0);
  return g;
}
inline void seed(uint64_t s) { rng().seed(s); }

// ---- fibers ---------------------------------------------------------------------------------
enum class Wait { kRunning, kBlockBarrier, kWarpShuffle, kDone };
enum class Shuffle { kIndex, kUp };

struct Thread {
  ucontext_t ctx;
  uint3 idx;
  Wait wait = Wait::kRunning;
  int site = 0;  // source line of the barrier / shuffle it waits at
  Shuffle kind = Shuffle::kIndex;
  unsigned mask = 0;
  int arg = 0;  // source lane or delta
  int width = 32;
  uint64_t value = 0, result = 0;
};

struct Block {
  std::vector<Thread> threads;
  ucontext_t scheduler;
  Thread* current = nullptr;
  std::function<void()> body;
};
inline Block* block_run = nullptr;
inline std::vector<unsigned char> dynamic_shared_memory;
inline void* dynamic_shared() { return dynamic_shared_memory.data(); }

constexpr size_t kStackBytes = 256 * 1024;
inline std::vector<char*>& stacks() {
  static std::vector<char*> s;
  return s;
}
inline char* stack(size_t i) {
  auto& s = stacks();
  while (s.size() <= i) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("emu: cannot map a fiber stack");
    s.push_back(static_cast<char*>(p));
  }
  return s[i];
}

inline void fiber_entry() {
  block_run->body();
  block_run->current->wait = Wait::kDone;
  // returning resumes uc_link: the scheduler
}

inline std::string where(const Thread& t) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "block (%u, %u, %u) thread (%u, %u, %u)", blockIdx.x, blockIdx.y,
                blockIdx.z, t.idx.x, t.idx.y, t.idx.z);
  return buf;
}

inline void yield() {
  Thread* t = block_run->current;
  swapcontext(&t->ctx, &block_run->scheduler);
}

// A warp whose live lanes all wait at one shuffle: hand out the values.
inline bool release_warps(Block& b) {
  bool released = false;
  const unsigned n = static_cast<unsigned>(b.threads.size());
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    const unsigned w1 = std::min(n, w0 + 32);
    unsigned present = 0, waiting = 0;
    for (unsigned i = w0; i < w1; ++i) {
      const Thread& t = b.threads[i];
      if (t.wait != Wait::kDone) present |= 1u << (i - w0);
      if (t.wait == Wait::kWarpShuffle) waiting |= 1u << (i - w0);
    }
    if (waiting == 0 || waiting != present) continue;
    const Thread& first = b.threads[w0 + __builtin_ctz(waiting)];
    const unsigned exists = (w1 - w0 == 32) ? 0xffffffffu : ((1u << (w1 - w0)) - 1);
    for (unsigned i = w0; i < w1; ++i) {
      const Thread& t = b.threads[i];
      if (t.wait != Wait::kWarpShuffle) continue;
      if (t.site != first.site || t.kind != first.kind || t.width != first.width) {
        violation(where(t) + ": the lanes of a warp are at different shuffles (lines " +
                  std::to_string(t.site) + " and " + std::to_string(first.site) + ")");
      }
      if ((t.mask & ~present) != 0 || t.mask != (exists & t.mask) || (t.mask & present) != present) {
        violation(where(t) + ": shuffle at line " + std::to_string(t.site) +
                  " with a mask that is not the warp's live lanes (mask " + std::to_string(t.mask) +
                  ", live " + std::to_string(present) + ")");
      }
    }
    for (unsigned i = w0; i < w1; ++i) {
      Thread& t = b.threads[i];
      if (t.wait != Wait::kWarpShuffle) continue;
      const unsigned lane = i - w0;
      const unsigned seg = lane & ~static_cast<unsigned>(t.width - 1);
      unsigned src = lane;
      if (t.kind == Shuffle::kIndex) {
        src = seg + (static_cast<unsigned>(t.arg) & static_cast<unsigned>(t.width - 1));
      } else if (lane - seg >= static_cast<unsigned>(t.arg)) {
        src = lane - static_cast<unsigned>(t.arg);
      }
      if (w0 + src >= w1 || b.threads[w0 + src].wait != Wait::kWarpShuffle) {
        violation(where(t) + ": shuffle source lane " + std::to_string(src) + " is not taking part");
        t.result = t.value;
      } else {
        t.result = b.threads[w0 + src].value;
      }
    }
    for (unsigned i = w0; i < w1; ++i) {
      if (b.threads[i].wait == Wait::kWarpShuffle) b.threads[i].wait = Wait::kRunning;
    }
    released = true;
  }
  return released;
}

// Every live thread at a __syncthreads: release them all.
inline bool release_block(Block& b) {
  const Thread* first = nullptr;
  size_t live = 0;
  for (const Thread& t : b.threads) {
    if (t.wait == Wait::kDone) continue;
    if (t.wait != Wait::kBlockBarrier) return false;
    if (first == nullptr) first = &t;
    ++live;
  }
  if (first == nullptr) return false;
  if (live != b.threads.size()) {
    violation(where(*first) + ": __syncthreads at line " + std::to_string(first->site) + " after " +
              std::to_string(b.threads.size() - live) + " thread(s) of the block exited");
  }
  for (Thread& t : b.threads) {
    if (t.wait != Wait::kBlockBarrier) continue;
    if (t.site != first->site) {
      violation(where(t) + ": threads of a block wait at different __syncthreads (lines " +
                std::to_string(t.site) + " and " + std::to_string(first->site) + ")");
    }
    t.wait = Wait::kRunning;
  }
  return true;
}

// Apart from run_block, so that getcontext (which returns twice) clobbers none of its locals.
__attribute__((noinline)) inline void init_fiber(Thread& t, char* stack_base, ucontext_t* link) {
  getcontext(&t.ctx);
  t.ctx.uc_stack.ss_sp = stack_base;
  t.ctx.uc_stack.ss_size = kStackBytes;
  t.ctx.uc_link = link;
  makecontext(&t.ctx, fiber_entry, 0);
}

inline void run_block(const dim3& block, std::function<void()> body) {
  Block b;
  b.body = std::move(body);
  const size_t n = static_cast<size_t>(block.x) * block.y * block.z;
  b.threads.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    t.idx.x = static_cast<unsigned>(i % block.x);
    t.idx.y = static_cast<unsigned>((i / block.x) % block.y);
    t.idx.z = static_cast<unsigned>(i / (static_cast<size_t>(block.x) * block.y));
    init_fiber(t, stack(i), &b.scheduler);
  }
  Block* outer = block_run;
  block_run = &b;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (;;) {
    std::shuffle(order.begin(), order.end(), rng());
    bool ran = false;
    for (size_t i : order) {
      Thread& t = b.threads[i];
      if (t.wait != Wait::kRunning) continue;
      b.current = &t;
      threadIdx = t.idx;
      swapcontext(&b.scheduler, &t.ctx);
      ran = true;
    }
    if (ran) continue;
    bool all_done = true;
    for (const Thread& t : b.threads) all_done = all_done && t.wait == Wait::kDone;
    if (all_done) break;
    const bool warps = release_warps(b);
    if (!warps && !release_block(b)) {
      std::string state;
      for (const Thread& t : b.threads) {
        if (t.wait == Wait::kBlockBarrier || t.wait == Wait::kWarpShuffle) {
          state = where(t) + (t.wait == Wait::kBlockBarrier ? " waits at __syncthreads, line "
                                                             : " waits at a shuffle, line ") +
                  std::to_string(t.site);
          break;
        }
      }
      violation("deadlock: no thread of the block can go on (" + state + ")");
      block_run = outer;
      throw std::runtime_error("emu: deadlock");
    }
  }
  block_run = outer;
}

// kernel<<<grid, block, shared_bytes>>>(args...)
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, size_t shared_bytes, Kernel kernel, Args... args) {
  if (static_cast<size_t>(block.x) * block.y * block.z > 1024 || block.x * block.y * block.z == 0) {
    throw std::runtime_error("emu: a block of " + std::to_string(block.x * block.y * block.z) +
                             " threads (CUDA allows 1 to 1024)");
  }
  if (grid.y > 65535 || grid.z > 65535 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    throw std::runtime_error("emu: grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) +
                             ", " + std::to_string(grid.z) + ") outside CUDA's limits");
  }
  if (shared_bytes > 48 * 1024) {
    throw std::runtime_error("emu: " + std::to_string(shared_bytes) +
                             " bytes of dynamic shared memory without an opt-in (48 KB at most)");
  }
  gridDim = grid;
  blockDim = block;
  std::vector<uint3> blocks;
  blocks.reserve(static_cast<size_t>(grid.x) * grid.y * grid.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(uint3{x, y, z});
  std::shuffle(blocks.begin(), blocks.end(), rng());
  for (const uint3& bi : blocks) {
    blockIdx = bi;
    dynamic_shared_memory.assign(shared_bytes + 16, 0xA5);
    run_block(block, [&] { kernel(args...); });
  }
}

// ---- barriers and shuffles -------------------------------------------------------------------
inline void sync_block(int line) {
  Thread* t = block_run->current;
  t->wait = Wait::kBlockBarrier;
  t->site = line;
  yield();
}

template <typename T>
T shuffle(int line, Shuffle kind, unsigned mask, T var, int arg, int width) {
  static_assert(sizeof(T) <= 8, "emu: shuffles move at most 8 bytes");
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    violation("shuffle at line " + std::to_string(line) + " with width " + std::to_string(width));
    width = 32;
  }
  Thread* t = block_run->current;
  t->wait = Wait::kWarpShuffle;
  t->site = line;
  t->kind = kind;
  t->mask = mask;
  t->arg = arg;
  t->width = width;
  t->value = 0;
  std::memcpy(&t->value, &var, sizeof(T));
  yield();
  T out;
  std::memcpy(&out, &block_run->current->result, sizeof(T));
  return out;
}

struct ShuffleAt {
  int line;
  Shuffle kind;
  template <typename T>
  T operator()(unsigned mask, T var, int arg, int width = 32) const {
    return shuffle(line, kind, mask, var, arg, width);
  }
};

// ---- "device" memory --------------------------------------------------------------------------
enum class Fill { kGarbage, kZero, kCopy };
constexpr unsigned char kGarbageByte = 0xA5;  // 0xA5A5... : a huge or negative number, a NaN-free
                                              // float of about -2.9e-16, never a valid index
constexpr unsigned char kCanary = 0x5C;

template <typename T>
class Buffer {
 public:
  explicit Buffer(size_t n, Fill fill = Fill::kGarbage, const T* src = nullptr) : n_(n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    bytes_ = n * sizeof(T);
    const size_t aligned = (bytes_ + 15) / 16 * 16;
    data_pages_ = std::max<size_t>(1, (aligned + page - 1) / page);
    total_ = (data_pages_ + 2) * page;
    void* base = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("emu: cannot map a buffer");
    base_ = static_cast<unsigned char*>(base);
    mprotect(base_, page, PROT_NONE);
    mprotect(base_ + (1 + data_pages_) * page, page, PROT_NONE);
    unsigned char* data_end = base_ + (1 + data_pages_) * page;
    data_ = data_end - aligned;
    std::memset(base_ + page, kCanary, data_pages_ * page);
    if (fill == Fill::kGarbage) std::memset(data_, kGarbageByte, bytes_);
    if (fill == Fill::kZero) std::memset(data_, 0, bytes_);
    if (fill == Fill::kCopy && bytes_ > 0) std::memcpy(data_, src, bytes_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (unsigned char* p = base_ + page; p < data_; ++p) {
      if (*p != kCanary) {
        violation("a write before the start of a buffer of " + std::to_string(bytes_) + " bytes");
        break;
      }
    }
    for (unsigned char* p = data_ + bytes_; p < base_ + (1 + data_pages_) * page; ++p) {
      if (*p != kCanary) {
        violation("a write past the end of a buffer of " + std::to_string(bytes_) + " bytes");
        break;
      }
    }
    munmap(base_, total_);
  }
  T* get() { return reinterpret_cast<T*>(data_); }
  const T* get() const { return reinterpret_cast<const T*>(data_); }
  T& operator[](size_t i) { return get()[i]; }
  size_t size() const { return n_; }

 private:
  size_t n_, bytes_, data_pages_, total_;
  unsigned char* base_;
  unsigned char* data_;
};

}  // namespace emu

// ---- device functions -----------------------------------------------------------------------
#define __syncthreads() ::emu::sync_block(__LINE__)
// __shfl_sync(mask, var, src_lane[, width]) and __shfl_up_sync(mask, var, delta[, width])
#define __shfl_sync ::emu::ShuffleAt{__LINE__, ::emu::Shuffle::kIndex}
#define __shfl_up_sync ::emu::ShuffleAt{__LINE__, ::emu::Shuffle::kUp}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline int __ffsll(long long v) { return __builtin_ffsll(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }  // one rounding

template <typename T>
inline T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <typename T>
inline T atomicOr(T* address, T value) {
  const T old = *address;
  *address = old | value;
  return old;
}
template <typename T>
inline T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

// CUDA's device min / max for two operands of one type
template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}
