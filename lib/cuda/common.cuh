// What the CUDA sources share: checks that die naming the file and line,
// and warp reductions (every lane gets the result; the same tree every time).
#ifndef SIGMA_CUDA_COMMON_CUH
#define SIGMA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "base/base.h"
}

typedef __nv_bfloat16 bf16;

static inline void cuda_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess) die_at(file, line, "CUDA: %s: %s", what, cudaGetErrorString(e));
}
#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define LAUNCHED() CUDA_CHECK(cudaGetLastError())

static inline int cdiv(long a, long b) { return (int)((a + b - 1) / b); }

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

#endif
