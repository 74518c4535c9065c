// Greedy NMS on the CPU (frcnn::nms, CPU dispatch key).
//
// 1. Copy to doubles, reject NaN/inf, sort by score (descending, stable: equal scores keep the
//    lower index first) and lay the boxes out in that order (structure of arrays) with their
//    +1 areas.
// 2. Keep the undecided boxes in a list (score order). Repeat until it is empty:
//    a. take its first 64 boxes and resolve them serially among themselves (a box is kept
//       unless a kept box before it in the block has IoU > threshold with it);
//    b. sweep every later undecided box against the block's kept boxes (branch-free loops
//       that vectorise; split over threads with at::parallel_for when the sweep is large)
//       and compact the list, dropping the suppressed ones.
// This is exactly the sequential greedy rule, with at most one parallel region per 64 decided
// boxes (not one per kept box), and suppressed boxes are never looked at again.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nms/nms.h"

namespace frcnn {

void nms_check_inputs(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4,
                    "frcnn::nms: boxes must have shape (N, 4), got ", boxes.sizes(),
                    "; each row of boxes must be an x1, y1, x2, y2 box");
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0),
                    "frcnn::nms: scores must have shape (N,) = (", boxes.size(0),
                    ",) like boxes, got ", scores.sizes());
  const at::ScalarType dt = boxes.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble,
                   "frcnn::nms: boxes must be float32 or float64, got ", dt);
  TORCH_CHECK_TYPE(scores.scalar_type() == dt, "frcnn::nms: boxes (", dt, ") and scores (",
                   scores.scalar_type(), ") differ in dtype; they must have the same dtype");
  TORCH_CHECK_VALUE(boxes.device() == scores.device(), "frcnn::nms: boxes is on ", boxes.device(),
                    " but scores is on ", scores.device());
  TORCH_CHECK_VALUE(std::isfinite(iou_threshold), "frcnn::nms: iou_threshold must be finite, got ",
                    iou_threshold);
}

namespace {

constexpr int64_t kBlock = 64;

// Boxes in score order, structure of arrays; `rank` is each box's position in that order.
struct BoxList {
  std::vector<double> x1, y1, x2, y2, area;
  std::vector<int64_t> rank;
  void resize(int64_t n) {
    for (auto* v : {&x1, &y1, &x2, &y2, &area}) v->resize(n);
    rank.resize(n);
  }
  void move(int64_t from, int64_t to) {
    x1[to] = x1[from];
    y1[to] = y1[from];
    x2[to] = x2[from];
    y2[to] = y2[from];
    area[to] = area[from];
    rank[to] = rank[from];
  }
  bool above(int64_t a, int64_t b, double thr) const {
    return nms_iou_above(x1[a], y1[a], x2[a], y2[a], area[a], x1[b], y1[b], x2[b], y2[b], area[b],
                         thr);
  }
};

// hit[j] = 1 where IoU(box a, box j) > thr, for j in [begin, end): nms_iou_above written out
// as a branch-free loop over arrays (and an int64 flag, same width as a double) so that gcc
// vectorises it.
void sweep(double ax1, double ay1, double ax2, double ay2, double aa, const BoxList& c,
           int64_t begin, int64_t end, double thr, int64_t* __restrict__ hit) {
  const double* __restrict__ x1 = c.x1.data();
  const double* __restrict__ y1 = c.y1.data();
  const double* __restrict__ x2 = c.x2.data();
  const double* __restrict__ y2 = c.y2.data();
  const double* __restrict__ area = c.area.data();
  for (int64_t j = begin; j < end; ++j) {
    const bool above = nms_iou_above(ax1, ay1, ax2, ay2, aa, x1[j], y1[j], x2[j], y2[j], area[j], thr);
    hit[j] = above ? int64_t{1} : hit[j];
  }
}

}  // namespace

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms_check_inputs(boxes, scores, iou_threshold);
  TORCH_CHECK_VALUE(boxes.device().is_cpu(),
                    "frcnn::nms (CPU kernel): boxes must be on the CPU, got ", boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  // Copy to doubles, check, sort and lay out in score order, all on this thread: these are
  // O(N log N) and cheaper than waking other threads.
  std::vector<double> coords(4 * n), score(n);
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cpu_copy", [&] {
    const at::Tensor bc = boxes.contiguous();
    const at::Tensor sc = scores.contiguous();
    const scalar_t* bp = bc.data_ptr<scalar_t>();
    const scalar_t* sp = sc.data_ptr<scalar_t>();
    for (int64_t k = 0; k < 4 * n; ++k) coords[k] = static_cast<double>(bp[k]);
    for (int64_t k = 0; k < n; ++k) score[k] = static_cast<double>(sp[k]);
  });
  const auto finite = [](double v) { return std::isfinite(v); };
  TORCH_CHECK_VALUE(std::all_of(coords.begin(), coords.end(), finite),
                    "frcnn::nms: boxes contains NaN or inf");
  TORCH_CHECK_VALUE(std::all_of(score.begin(), score.end(), finite),
                    "frcnn::nms: scores contains NaN or inf");
  // stable descending order: equal scores (-0.0 == 0.0 too) keep the lower index first
  std::vector<int64_t> ord(n);
  for (int64_t k = 0; k < n; ++k) ord[k] = k;
  std::stable_sort(ord.begin(), ord.end(),
                   [&](int64_t a, int64_t b) { return score[a] > score[b]; });

  // the undecided boxes, in score order; compacted after every block
  BoxList cand;
  cand.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    const double* p = coords.data() + 4 * ord[k];
    cand.x1[k] = p[0];
    cand.y1[k] = p[1];
    cand.x2[k] = p[2];
    cand.y2[k] = p[3];
    cand.area[k] = ((p[2] - p[0]) + 1.0) * ((p[3] - p[1]) + 1.0);
    cand.rank[k] = k;
  }
  int64_t size = n;
  std::vector<int64_t> hit(n);
  std::vector<int64_t> keep;
  std::vector<int64_t> block_kept;  // positions in cand
  block_kept.reserve(kBlock);
  while (size > 0) {
    // a. resolve the first (up to) 64 undecided boxes serially
    const int64_t m = std::min(kBlock, size);
    block_kept.clear();
    for (int64_t u = 0; u < m; ++u) {
      bool suppressed = false;
      for (const int64_t k : block_kept) {
        if (cand.above(k, u, iou_threshold)) {
          suppressed = true;
          break;
        }
      }
      if (!suppressed) block_kept.push_back(u);
    }
    for (const int64_t k : block_kept) keep.push_back(ord[cand.rank[k]]);
    // b. sweep the rest against the block's kept boxes, then compact. A sweep is split across
    // threads only when each thread gets >= 2^20 IoUs (about a millisecond): a parallel region
    // costs a wake-up, and a whole scheduler time slice when another process holds a core, so
    // small sweeps (the common case below ~30k boxes) stay on this thread.
    const int64_t grain =
        std::max<int64_t>(4096, (int64_t{1} << 20) / std::max<int64_t>(1, block_kept.size()));
    at::parallel_for(m, size, grain, [&](int64_t begin, int64_t end) {
      std::fill(hit.begin() + begin, hit.begin() + end, int64_t{0});
      for (const int64_t k : block_kept) {
        sweep(cand.x1[k], cand.y1[k], cand.x2[k], cand.y2[k], cand.area[k], cand, begin, end,
              iou_threshold, hit.data());
      }
    });
    int64_t out = 0;
    for (int64_t j = m; j < size; ++j) {
      if (!hit[j]) cand.move(j, out++);
    }
    size = out;
  }
  return at::tensor(keep, boxes.options().dtype(at::kLong));
}

}  // namespace frcnn
