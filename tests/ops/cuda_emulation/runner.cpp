// Runs the project's CUDA kernels (csrc/nms/nms_kernels.cuh, csrc/roi_pool/roi_pool_kernels.cuh)
// under the host emulation of cuda_emulation.h, with the launch sequence of their host wrappers
// (csrc/nms/nms_cuda.cu, csrc/roi_pool/roi_pool_cuda.cu): the same launch shapes, the same
// buffers (garbage where the wrapper uses at::empty, zeros for at::zeros, the same fills for
// at::full), the same choice between the int32 and int64 index kernels.
//
// usage: runner OP DIR
//   DIR/params.txt   one "key value" per line (see each op below)
//   DIR/<name>.bin   the inputs, raw little-endian arrays in C order
// writes DIR/<name>.bin for the outputs; prints the emulator's violations on stderr.
// exit status: 0 ok, 3 violations found, 2 bad usage or an emulator error (a deadlock, a launch
// outside CUDA's limits); a fault (an access outside a buffer) kills it with SIGSEGV.
//
// Ops and their parameters:
//   nms            n dtype(f32|f64) threshold seed [reduce_threads 1024|64|32] [removed shared|global]
//                  in: boxes (n x 4), scores (n)        out: keep (count, int64), info (2, int64)
//   roi_forward    dtype batch channels height width rois pooled_h pooled_w scale seed
//                  [index auto|int32|int64]
//                  in: features, rois (rois x 5)        out: output, argmax (int32), bad_row (int32)
//   roi_backward   dtype batch channels height width rois pooled_h pooled_w seed [index ...]
//                  in: grad, rois, argmax (int32)       out: grad_input, flags (2, int64)
//   roi_gather     the same and scale                   out: grad_input, flags (3, int64)
//   sgd_update     n grad_scale decay momentum rate seed [blocks B] (floats as C99 hex, %a)
//                  in: weight, grad, history (n, f32)   out: weight, history
//   selftest_*     kernels with planted bugs, so that the tests can check the emulator sees them
#include "cuda_emulation.h"

#include "nms/nms_kernels.cuh"
#include "roi_pool/roi_pool_kernels.cuh"
#include "sgd/sgd_kernels.cuh"

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace {

using u64 = unsigned long long;

struct Params {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const char* fallback = nullptr) const {
    auto it = kv.find(k);
    if (it != kv.end()) return it->second;
    if (fallback != nullptr) return fallback;
    throw std::runtime_error("params.txt: missing " + k);
  }
  int64_t i(const std::string& k) const { return std::stoll(get(k)); }
  double d(const std::string& k) const { return std::stod(get(k)); }
};

std::string dir;

Params read_params() {
  std::ifstream f(dir + "/params.txt");
  if (!f) throw std::runtime_error(dir + "/params.txt: cannot open");
  Params p;
  std::string key, value;
  while (f >> key >> value) p.kv[key] = value;
  return p;
}

template <typename T>
std::vector<T> read_input(const std::string& name, size_t n) {
  const std::string path = dir + "/" + name + ".bin";
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error(path + ": cannot open");
  const size_t bytes = static_cast<size_t>(f.tellg());
  if (bytes != n * sizeof(T)) {
    throw std::runtime_error(path + ": " + std::to_string(bytes) + " bytes, expected " +
                             std::to_string(n * sizeof(T)));
  }
  std::vector<T> v(n);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
  return v;
}

template <typename T>
void write_output(const std::string& name, const T* data, size_t n) {
  const std::string path = dir + "/" + name + ".bin";
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  if (!f) throw std::runtime_error(path + ": cannot write");
}

// ---- NMS: nms_cuda's sequence -------------------------------------------------------------
template <typename T>
void run_nms(const Params& p) {
  namespace K = frcnn::nms_kernels;
  const int64_t n = p.i("n");
  const double thr = p.d("threshold");
  const int threads = static_cast<int>(std::stoll(p.get("reduce_threads", "1024")));
  const std::string removed_where = p.get("removed", "auto");
  std::vector<T> boxes_h = read_input<T>("boxes", n * 4);
  std::vector<T> scores_h = read_input<T>("scores", n);
  if (n == 0) {  // the wrapper returns an empty tensor before any launch
    write_output<int64_t>("keep", nullptr, 0);
    const int64_t info[2] = {0, 0};
    write_output("info", info, 2);
    return;
  }
  const int64_t col_blocks = (n + K::kTile - 1) / K::kTile;
  emu::Buffer<T> boxes(n * 4, emu::Fill::kCopy, boxes_h.data());
  emu::Buffer<T> scores(n, emu::Fill::kCopy, scores_h.data());
  // at::sort(s + 0.0, stable, descending): +0.0 makes -0.0 and 0.0 equal; NaN sorts first
  std::vector<int64_t> order_h(n);
  for (int64_t k = 0; k < n; ++k) order_h[k] = k;
  std::stable_sort(order_h.begin(), order_h.end(), [&](int64_t a, int64_t b) {
    const T sa = scores_h[a] + T(0), sb = scores_h[b] + T(0);
    if (std::isnan(sa)) return !std::isnan(sb);
    if (std::isnan(sb)) return false;
    return sa > sb;
  });
  emu::Buffer<int64_t> order(n, emu::Fill::kCopy, order_h.data());
  emu::Buffer<double> sorted(n * (sizeof(K::SortedBox) / sizeof(double)));
  emu::Buffer<int64_t> info(2, emu::Fill::kZero);
  emu::launch(dim3(K::gather_blocks(n)), dim3(256), 0, K::gather_kernel<T>, boxes.get(), scores.get(),
              order.get(), n, reinterpret_cast<K::SortedBox*>(sorted.get()), info.get());

  emu::Buffer<u64> mask(n * col_blocks);
  emu::launch(dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks)),
              dim3(K::kTile), 0, K::mask_kernel,
              reinterpret_cast<const K::SortedBox*>(sorted.get()), n, col_blocks, thr, mask.get());

  emu::Buffer<u64> kept_words(col_blocks);
  emu::Buffer<int64_t> keep(n);
  const bool in_shared = removed_where == "auto" ? K::removed_in_shared(col_blocks)
                                                 : removed_where == "shared";
  emu::Buffer<u64> removed(in_shared ? 0 : col_blocks);
  const size_t removed_bytes = in_shared ? static_cast<size_t>(col_blocks) * sizeof(u64) : 0;
  u64* removed_ptr = in_shared ? nullptr : removed.get();
  auto reduce = [&](auto kernel) {
    emu::launch(dim3(1), dim3(threads), removed_bytes, kernel, mask.get(), order.get(), n,
                col_blocks, removed_ptr, kept_words.get(), keep.get(), info.get());
  };
  if (threads == 1024) {
    reduce(K::reduce_kernel<1024>);
  } else if (threads == 64) {
    reduce(K::reduce_kernel<64>);
  } else if (threads == 32) {
    reduce(K::reduce_kernel<32>);
  } else {
    throw std::runtime_error("reduce_threads: 1024, 64 or 32");
  }
  const int64_t count = info[0];
  if (count < 0 || count > n) throw std::runtime_error("nms: kept count " + std::to_string(count));
  write_output("keep", keep.get(), static_cast<size_t>(count));
  write_output("info", info.get(), 2);
}

// ---- RoI pooling: roi_pool_*_cuda's sequences ------------------------------------------------
struct RoiShape {
  int64_t batch, channels, height, width, rois, pooled_h, pooled_w;
  explicit RoiShape(const Params& p)
      : batch(p.i("batch")), channels(p.i("channels")), height(p.i("height")), width(p.i("width")),
        rois(p.i("rois")), pooled_h(p.i("pooled_h")), pooled_w(p.i("pooled_w")) {}
  int64_t features() const { return batch * channels * height * width; }
  int64_t outputs() const { return rois * channels * pooled_h * pooled_w; }
};

// "auto": the wrapper's choice; "int32" / "int64" force one kernel (int64 is otherwise only
// reached by inputs of more than 2^31 elements)
bool use_int32(const Params& p, bool wrapper_choice) {
  const std::string index = p.get("index", "auto");
  if (index == "auto") return wrapper_choice;
  if (index == "int32") return true;
  if (index == "int64") return false;
  throw std::runtime_error("index: auto, int32 or int64");
}

template <typename T>
void run_roi_forward(const Params& p) {
  namespace K = frcnn::roi_pool_kernels;
  const RoiShape s(p);
  const T scale = static_cast<T>(p.d("scale"));
  std::vector<T> feat_h = read_input<T>("features", s.features());
  std::vector<T> rois_h = read_input<T>("rois", s.rois * 5);
  emu::Buffer<T> in(s.features(), emu::Fill::kCopy, feat_h.data());
  emu::Buffer<T> rois(s.rois * 5, emu::Fill::kCopy, rois_h.data());
  const int64_t total = s.outputs();
  emu::Buffer<T> output(total);
  emu::Buffer<int32_t> argmax(total);
  emu::Buffer<int> bad_row(1);
  bad_row[0] = K::kNoProblem;
  if (total > 0) {
    const bool small = K::fits_int32(total) && K::fits_int32(s.features());
    if (use_int32(p, small)) {
      emu::launch(dim3(K::grid_for(total)), dim3(K::kThreads), 0, K::forward_kernel<T, int32_t>,
                  in.get(), rois.get(), scale, total, static_cast<int32_t>(s.channels),
                  static_cast<int32_t>(s.height), static_cast<int32_t>(s.width),
                  static_cast<int32_t>(s.pooled_h), static_cast<int32_t>(s.pooled_w), s.batch,
                  output.get(), argmax.get(), bad_row.get());
    } else {
      emu::launch(dim3(K::grid_for(total)), dim3(K::kThreads), 0, K::forward_kernel<T, int64_t>,
                  in.get(), rois.get(), scale, total, s.channels, s.height, s.width, s.pooled_h,
                  s.pooled_w, s.batch, output.get(), argmax.get(), bad_row.get());
    }
  }
  write_output("output", output.get(), total);
  write_output("argmax", argmax.get(), total);
  write_output("bad_row", bad_row.get(), 1);
}

template <typename T>
void run_roi_backward(const Params& p) {
  namespace K = frcnn::roi_pool_kernels;
  const RoiShape s(p);
  const int64_t total = s.outputs();
  std::vector<T> grad_h = read_input<T>("grad", total);
  std::vector<T> rois_h = read_input<T>("rois", s.rois * 5);
  std::vector<int32_t> argmax_h = read_input<int32_t>("argmax", total);
  emu::Buffer<T> grad(total, emu::Fill::kCopy, grad_h.data());
  emu::Buffer<T> rois(s.rois * 5, emu::Fill::kCopy, rois_h.data());
  emu::Buffer<int32_t> argmax(total, emu::Fill::kCopy, argmax_h.data());
  emu::Buffer<T> grad_input(s.features(), emu::Fill::kZero);
  emu::Buffer<u64> flags(2);
  flags[0] = flags[1] = ~0ULL;
  const int64_t bins = s.pooled_h * s.pooled_w, plane = s.height * s.width;
  if (total > 0) {
    if (use_int32(p, K::fits_int32(total))) {
      emu::launch(dim3(K::grid_for(total)), dim3(K::kThreads), 0, K::backward_kernel<T, int32_t>,
                  grad.get(), rois.get(), argmax.get(), total, static_cast<int32_t>(s.channels),
                  static_cast<int32_t>(bins), plane, s.batch, grad_input.get(), flags.get());
    } else {
      emu::launch(dim3(K::grid_for(total)), dim3(K::kThreads), 0, K::backward_kernel<T, int64_t>,
                  grad.get(), rois.get(), argmax.get(), total, s.channels, bins, plane, s.batch,
                  grad_input.get(), flags.get());
    }
  }
  write_output("grad_input", grad_input.get(), s.features());
  write_output("flags", flags.get(), 2);
}

template <typename T>
void run_roi_gather(const Params& p) {
  namespace K = frcnn::roi_pool_kernels;
  const RoiShape s(p);
  const T scale = static_cast<T>(p.d("scale"));
  const int64_t total = s.outputs();
  std::vector<T> grad_h = read_input<T>("grad", total);
  std::vector<T> rois_h = read_input<T>("rois", s.rois * 5);
  std::vector<int32_t> argmax_h = read_input<int32_t>("argmax", total);
  emu::Buffer<T> grad(total, emu::Fill::kCopy, grad_h.data());
  emu::Buffer<T> rois(s.rois * 5, emu::Fill::kCopy, rois_h.data());
  emu::Buffer<int32_t> argmax(total, emu::Fill::kCopy, argmax_h.data());
  emu::Buffer<T> grad_input(s.features(), emu::Fill::kZero);
  emu::Buffer<u64> flags(3);
  flags[0] = flags[1] = flags[2] = ~0ULL;
  if (total > 0) {
    const int64_t cells = s.features();
    emu::Buffer<frcnn::RoiGeometry<T>> geometry(s.rois);
    emu::Buffer<int64_t> roi_batch(s.rois);
    emu::Buffer<frcnn::BinRange> rows(s.rois * s.height), cols(s.rois * s.width);
    emu::launch(dim3(K::grid_for(s.rois)), dim3(K::kThreads), 0, K::gather_geometry_kernel<T>,
                rois.get(), scale, s.rois, s.pooled_h, s.pooled_w, s.batch, geometry.get(),
                roi_batch.get(), flags.get());
    if (s.height + s.width > 0) {
      emu::launch(dim3(K::grid_for(s.rois * (s.height + s.width))), dim3(K::kThreads), 0,
                  K::gather_tables_kernel<T>, geometry.get(), s.rois, s.height, s.width,
                  s.pooled_h, s.pooled_w, rows.get(), cols.get());
    }
    emu::launch(dim3(K::grid_for(total)), dim3(K::kThreads), 0, K::gather_check_kernel<T>,
                argmax.get(), geometry.get(), roi_batch.get(), total, s.channels, s.height,
                s.width, s.pooled_h, s.pooled_w, flags.get());
    if (cells > 0) {
      const bool small = K::fits_int32(cells) && K::fits_int32(total) &&
                         K::fits_int32(s.rois * s.height) && K::fits_int32(s.rois * s.width);
      if (use_int32(p, small)) {
        emu::launch(dim3(K::grid_for(cells)), dim3(K::kThreads), 0, K::gather_kernel<T, int32_t>,
                    grad.get(), roi_batch.get(), rows.get(), cols.get(), argmax.get(), cells,
                    static_cast<int32_t>(s.rois), static_cast<int32_t>(s.channels),
                    static_cast<int32_t>(s.height), static_cast<int32_t>(s.width),
                    static_cast<int32_t>(s.pooled_h), static_cast<int32_t>(s.pooled_w),
                    grad_input.get());
      } else {
        emu::launch(dim3(K::grid_for(cells)), dim3(K::kThreads), 0, K::gather_kernel<T, int64_t>,
                    grad.get(), roi_batch.get(), rows.get(), cols.get(), argmax.get(), cells,
                    s.rois, s.channels, s.height, s.width, s.pooled_h, s.pooled_w,
                    grad_input.get());
      }
    }
  }
  write_output("grad_input", grad_input.get(), s.features());
  write_output("flags", flags.get(), 3);
}

// ---- planted bugs: what the emulator must catch --------------------------------------------
// Thread 0 writes a shared value that the others read with no barrier in between.
__global__ void missing_barrier_kernel(int* out) {
  __shared__ int value;
  if (threadIdx.x == 0) value = 7 + static_cast<int>(blockIdx.x);
  out[blockIdx.x * blockDim.x + threadIdx.x] = value;
  __syncthreads();
  if (threadIdx.x == 0) value = -1;
}
// Half of the block returns before a __syncthreads the other half waits at.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x >= blockDim.x / 2) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
// Odd and even threads wait at two different barriers.
__global__ void split_barrier_kernel(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}
// A warp shuffle that half of the warp's lanes never reach.
__global__ void partial_shuffle_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 16) v = __shfl_sync(0xffffffffu, v, 0);
  out[threadIdx.x] = v;
}
// Lane i reads lane i - 1's value (the result must be checked, not only the emulator's report).
__global__ void shuffle_up_kernel(int64_t* out) {
  const int64_t v = 1000 + static_cast<int64_t>(threadIdx.x);
  out[threadIdx.x] = __shfl_up_sync(0xffffffffu, v, 1);
}
// A grid-stride loop that writes one element past the end.
__global__ void off_by_one_kernel(float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i <= n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = 1.0f;
  }
}

// ---- SGD update: sgd_update_cuda's launch (blocks B overrides the grid, to test the stride) ----
void run_sgd_update(const Params& p) {
  namespace K = frcnn::sgd_kernels;
  const int64_t n = p.i("n");
  const double grad_scale = p.d("grad_scale"), decay = p.d("decay");
  std::vector<float> w_h = read_input<float>("weight", n);
  std::vector<float> g_h = read_input<float>("grad", n);
  std::vector<float> v_h = read_input<float>("history", n);
  if (n > 0) {  // the wrapper returns before any launch for an empty blob
    emu::Buffer<float> w(n, emu::Fill::kCopy, w_h.data());
    emu::Buffer<float> g(n, emu::Fill::kCopy, g_h.data());
    emu::Buffer<float> v(n, emu::Fill::kCopy, v_h.data());
    const unsigned blocks = static_cast<unsigned>(std::stoll(p.get("blocks", std::to_string(K::grid_for(n)).c_str())));
    emu::launch(dim3(blocks), dim3(K::kThreads), 0, K::update_kernel, w.get(), g.get(), v.get(), n,
                grad_scale != 1.0, static_cast<float>(grad_scale), decay != 0.0, static_cast<float>(decay),
                static_cast<float>(p.d("momentum")), static_cast<float>(p.d("rate")));
    std::copy(w.get(), w.get() + n, w_h.begin());
    std::copy(v.get(), v.get() + n, v_h.begin());
  }
  write_output("weight", w_h.data(), n);
  write_output("history", v_h.data(), n);
}

// one planted-bug kernel on an output of n elements (T), written back as "out"
template <typename T, typename Kernel, typename... Extra>
void run_planted(unsigned blocks, unsigned threads, size_t n, emu::Fill fill, Kernel kernel,
                 Extra... extra) {
  emu::Buffer<T> out(n, fill);
  emu::launch(dim3(blocks), dim3(threads), 0, kernel, out.get(), extra...);
  write_output("out", out.get(), n);
}

void run_selftest(const std::string& op, const Params& p) {
  const unsigned threads = static_cast<unsigned>(p.i("threads"));
  const unsigned blocks = static_cast<unsigned>(p.i("blocks"));
  const size_t n = static_cast<size_t>(threads) * blocks;
  const emu::Fill zero = emu::Fill::kZero;
  if (op == "selftest_missing_barrier") {
    run_planted<int>(blocks, threads, n, emu::Fill::kGarbage, missing_barrier_kernel);
  } else if (op == "selftest_divergent_barrier") {
    run_planted<int>(blocks, threads, n, zero, divergent_barrier_kernel);
  } else if (op == "selftest_split_barrier") {
    run_planted<int>(blocks, threads, n, zero, split_barrier_kernel);
  } else if (op == "selftest_partial_shuffle") {
    run_planted<int>(blocks, threads, n, zero, partial_shuffle_kernel);
  } else if (op == "selftest_shuffle_up") {
    run_planted<int64_t>(blocks, threads, n, zero, shuffle_up_kernel);
  } else if (op == "selftest_off_by_one") {
    const int64_t len = p.i("len");
    run_planted<float>(blocks, threads, static_cast<size_t>(len), zero, off_by_one_kernel, len);
  } else {
    throw std::runtime_error("unknown op " + op);
  }
}

template <typename Fn32, typename Fn64>
void by_dtype(const Params& p, Fn32 f32, Fn64 f64) {
  const std::string dtype = p.get("dtype");
  if (dtype == "f32") {
    f32(p);
  } else if (dtype == "f64") {
    f64(p);
  } else {
    throw std::runtime_error("dtype: f32 or f64, got " + dtype);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: runner OP DIR\n";
    return 2;
  }
  const std::string op = argv[1];
  dir = argv[2];
  try {
    const Params p = read_params();
    emu::seed(static_cast<uint64_t>(std::stoll(p.get("seed", "0"))));
    if (op == "nms") {
      by_dtype(p, run_nms<float>, run_nms<double>);
    } else if (op == "roi_forward") {
      by_dtype(p, run_roi_forward<float>, run_roi_forward<double>);
    } else if (op == "roi_backward") {
      by_dtype(p, run_roi_backward<float>, run_roi_backward<double>);
    } else if (op == "roi_gather") {
      by_dtype(p, run_roi_gather<float>, run_roi_gather<double>);
    } else if (op == "sgd_update") {
      run_sgd_update(p);
    } else if (op.rfind("selftest_", 0) == 0) {
      run_selftest(op, p);
    } else {
      std::cerr << "runner: unknown op " << op << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    for (const std::string& v : emu::violations) std::cerr << "violation: " << v << "\n";
    std::cerr << "runner: " << e.what() << "\n";
    return 2;
  }
  // buffers are freed (and their canaries checked) at the end of each op
  for (const std::string& v : emu::violations) std::cerr << "violation: " << v << "\n";
  if (emu::violation_count > 0) {
    std::cerr << "runner: " << emu::violation_count << " violation(s)\n";
    return 3;
  }
  return 0;
}
