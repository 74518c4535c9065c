// Greedy NMS on a CUDA device (frcnn::nms, CUDA dispatch key). Everything stays on the GPU;
// the one device->host copy is the 16-byte result count / error flag at the end.
//
// 1. Stable descending sort of the scores (at::sort); gather the boxes into score order as
//    doubles with their +1 areas, flagging NaN/inf.
// 2. Mask kernel: 64-box tiles; block (row, col), row <= col, sets bit j of word
//    mask[i * col_blocks + col] when IoU(box i, box 64 col + j) > threshold, for boxes j after i.
// 3. Reduce kernel, one thread block: resolves one 64-box block at a time. Warp 0 decides
//    which boxes of block b survive (a serial scan over the set bits, with the block's diagonal
//    mask words in registers), then all threads OR the mask rows of the kept boxes into the
//    `removed` bit vector for the later blocks. Finally the kept sorted positions are compacted
//    (a block-wide prefix sum) into original indices.
// The IoU arithmetic is that of csrc/nms/nms.h, spelled with __d*_rn intrinsics so that no
// fused multiply-add changes the rounding.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "nms/nms.h"
#include "nms/nms_kernels.cuh"

namespace frcnn {

using namespace nms_kernels;

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms_check_inputs(boxes, scores, iou_threshold);
  TORCH_CHECK_VALUE(boxes.is_cuda(), "frcnn::nms (CUDA kernel): boxes must be on a CUDA device, got ",
                    boxes.device());
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  const at::TensorOptions long_opts = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, long_opts);
  const int64_t col_blocks = (n + kTile - 1) / kTile;
  TORCH_CHECK_VALUE(col_blocks <= 65535, "frcnn::nms (CUDA kernel): at most ", 65535 * kTile,
                    " boxes, got ", n);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  // + 0.0 turns -0.0 into +0.0, so that both zeros tie in the (radix) sort
  const at::Tensor order = std::get<1>(at::sort(s + 0.0, /*stable=*/true, /*dim=*/0,
                                                /*descending=*/true));
  at::Tensor sorted = at::empty({n, static_cast<int64_t>(sizeof(SortedBox) / sizeof(double))},
                                boxes.options().dtype(at::kDouble));
  at::Tensor info = at::zeros({2}, long_opts);  // [kept count, non-finite flag]
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_cuda_gather", [&] {
    gather_kernel<scalar_t><<<gather_blocks(n), 256, 0, stream>>>(
        b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), n,
        reinterpret_cast<SortedBox*>(sorted.data_ptr<double>()), info.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  at::Tensor mask = at::empty({n * col_blocks}, long_opts);
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
  mask_kernel<<<grid, kTile, 0, stream>>>(reinterpret_cast<const SortedBox*>(sorted.data_ptr<double>()),
                                         n, col_blocks, iou_threshold,
                                         reinterpret_cast<u64*>(mask.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  at::Tensor kept_words = at::empty({col_blocks}, long_opts);
  at::Tensor keep = at::empty({n}, long_opts);
  const size_t removed_bytes = static_cast<size_t>(col_blocks) * sizeof(u64);
  const bool in_shared = removed_in_shared(col_blocks);
  at::Tensor removed = in_shared ? at::Tensor() : at::empty({col_blocks}, long_opts);
  reduce_kernel<kReduceThreads><<<1, kReduceThreads, in_shared ? removed_bytes : 0, stream>>>(
      reinterpret_cast<const u64*>(mask.data_ptr<int64_t>()), order.data_ptr<int64_t>(), n,
      col_blocks, in_shared ? nullptr : reinterpret_cast<u64*>(removed.data_ptr<int64_t>()),
      reinterpret_cast<u64*>(kept_words.data_ptr<int64_t>()), keep.data_ptr<int64_t>(),
      info.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const at::Tensor info_host = info.to(at::kCPU);  // the one synchronisation
  const int64_t* ih = info_host.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(ih[1] == 0, "frcnn::nms: boxes or scores contains NaN or inf");
  return keep.narrow(0, 0, ih[0]);
}

}  // namespace frcnn
