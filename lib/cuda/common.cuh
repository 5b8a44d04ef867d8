// What the CUDA sources share: checks that die naming the file and line,
// the context every launcher takes (a cuBLAS handle and the stream it and
// the kernels run on), host copies on that stream, and block and warp
// reductions (every thread gets the result; the same tree every time).
//
// The rooms of lib/cuda, one translation unit per .cu, the .cuh files
// included by gpu_model.cu (as llm.c's llmc/*.cuh), each a layer kind's
// kernels and then their host launchers:
//
//   gpu_model.cu    the GpuModel: its buffers (carve), setup, the forward
//                   and backward in model.c's order, profile; the
//                   key-value cache's step
//   gpu_device.cu   the GpuModel behind the device table (model/device.h)
//   comm_nccl.cu    comm.h's collectives over NCCL, on the GPU's buffers
//   embedding.cuh   token embedding, forward and backward
//   rmsnorm.cuh     RMSNorm, and every norm's weight gradient
//   rope.cuh        QK-norm + rotary embedding
//   attention.cuh   causal attention: cuBLAS products around a softmax
//                   kernel, or the fused kernels of flash.cu
//   kvattention.cuh inference: a step's keys and values into the
//                   key-value cache, and attention against it
//   router.cuh      router softmax and top-k, balance statistics, backward
//   experts.cuh     gather, the experts' products (per-expert cuBLAS over
//                   side streams, or grouped.cu's kernels), combine; a
//                   decode step's rows straight to their experts
//   loss.cuh        cross-entropy over the logits
//   adamw.cuh       AdamW and the gradient norm
//   matmul.cuh      cuBLAS products: gemm, gemm_batched, linear layers
//   flash.cu        fused attention kernels (flash.h)
//   grouped.cu      grouped expert products, device-side sort (grouped.cuh)
//   cudnn_attention.cu  cuDNN's fused attention (cudnn_attention.h), over
//                   sdpa_plan.h's tensors; libcudnn loaded at run time
//   cutlass_experts.cu  CUTLASS's sm90 grouped GEMM for the experts
//                   (cutlass_experts.h), over route_plan.h's problems
//   ptx.cuh         the tensor-core and cp.async instructions
//   cuda_check.h    CUDA_CHECK, for this file and the host-only units
//   common.cuh      this file
//
// The arrows run one way: gpu_model.cu -> layer rooms (-> matmul.cuh,
// rmsnorm.cuh, flash.h, grouped.cuh, cudnn_attention.h, cutlass_experts.h)
// -> common.cuh. The layer rooms take
// tensors, sizes and a GpuCtx, never the GpuModel, and hold no state.
#ifndef SIGMA_CUDA_COMMON_CUH
#define SIGMA_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda/cuda_check.h"

extern "C" {
#include "base/base.h"
}

typedef __nv_bfloat16 bf16;

#define LAUNCHED() CUDA_CHECK(cudaGetLastError())

static inline void cublas_check(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS) die_at(file, line, "cuBLAS: %s: status %d", what, (int)s);
}
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)

static inline int cdiv(long a, long b) { return (int)((a + b - 1) / b); }

// Where work goes: every kernel and copy of a launcher on `stream`, every
// cuBLAS product through `blas` (a handle set to that stream). The GpuModel
// owns its contexts; nothing here is global.
typedef struct {
    cublasHandle_t blas;
    cudaStream_t stream;
} GpuCtx;

// Host copies on a context's stream. A copy to the device is queued behind
// the work before it: its source must stay as it is until the stream has
// passed it (a copy_to_host or cudaStreamSynchronize after it). A copy to
// the host waits for the stream: the data is there when it returns.
static inline void copy_to_device(void *dst, const void *src, size_t bytes, GpuCtx ctx)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream));
}
static inline void copy_to_host(void *dst, const void *src, size_t bytes, GpuCtx ctx)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

// A kernel's dynamic shared memory as `type name[]`, and a launch on a
// stream: written so because the CPU emulation (tests/emu/cuda_emu.h,
// which defines both its own way) runs the same kernels without a GPU.
#ifndef SIGMA_EMU
#define DYNAMIC_SMEM(type, name) extern __shared__ __align__(16) type name[]
#define LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum (or max) over a block of up to 1024 threads, the same tree every
// time: deterministic. Every thread gets the result.
template <bool MAX> __device__ static float block_reduce(float v)
{
    __shared__ float part[32];
    __syncthreads();   // part may still be read by a previous call
    int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    v = MAX ? warp_max(v) : warp_sum(v);
    if (lane == 0) part[w] = v;
    __syncthreads();
    float r = lane < nw ? part[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? warp_max(r) : warp_sum(r);
}
__device__ static inline double block_sum_double(double v)
{
    __shared__ double part[32];
    __syncthreads();
    int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) part[w] = v;
    __syncthreads();
    double r = lane < nw ? part[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
    return r;
}
__device__ static inline float to_f(float x) { return x; }
__device__ static inline float to_f(bf16 x) { return __bfloat162float(x); }

#endif
