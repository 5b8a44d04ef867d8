// The tensor-core and asynchronous-copy instructions the hand-written
// kernels use, each as a small function. tests/emu/cuda_emu.h supplies the
// same functions for the CPU emulation that tests the kernels without a GPU.
#ifndef SIGMA_CUDA_PTX_CUH
#define SIGMA_CUDA_PTX_CUH

#include "cuda/common.cuh"

#include <stdint.h>

#ifndef SIGMA_EMU
// 16 bytes from global to shared memory without a register, or 16 zero bytes
// when !valid; lands by the cp_async_wait that covers its group.
__device__ static inline void cp_async16(void *dst, const void *src, bool valid)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
}
__device__ static inline void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
// every committed group but the newest n has landed
template <int N> __device__ static inline void cp_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Four 8 x 8 bf16 matrices from shared memory: lane l gives the address of
// row l % 8 of matrix l / 8; r[i] gets matrix i's elements (row l / 4,
// columns 2 (l % 4) and the next), or with TRANS its transpose's.
template <bool TRANS> __device__ static inline void ldmatrix_x4(uint32_t r[4], const bf16 *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
}

// c[4] += a (16 x 16, row major) . b (16 x 8, column major): bf16 in, fp32
// accumulate, the fragments of the PTX ISA's m16n8k16 layout.
__device__ static inline void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// acc0, acc1 (two adjacent 16 x 8 tiles) += a . the two B fragments that
// one ldmatrix_x4 gives from p (see the callers for the addresses).
template <bool TRANS>
__device__ static inline void mma_pair(float acc0[4], float acc1[4], const uint32_t a[4], const bf16 *p)
{
    uint32_t r[4];
    ldmatrix_x4<TRANS>(r, p);
    uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
    mma_bf16(acc0, a, b0);
    mma_bf16(acc1, a, b1);
}

#endif
