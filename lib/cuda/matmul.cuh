// Matrix products through cuBLAS, and the bf16 copies of fp32 operands.
//
// Row-major C[M, N] (ldc) = alpha * op(A)[M, K] . op(B)[K, N] + beta * C,
// A and B bf16, C bf16 or fp32, fp32 accumulation. cuBLAS is column-major:
// a row-major X is its transpose there, so C^T = op(B)^T op(A)^T.
#ifndef SIGMA_CUDA_MATMUL_CUH
#define SIGMA_CUDA_MATMUL_CUH

#include "cuda/common.cuh"

// ---------------------------------------------------------------- kernels

static __global__ void to_bf16_kernel(bf16 *out, const float *in, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(in[i]);
}

// ---------------------------------------------------------------- launchers

// out[n] (bf16) = in[n] (fp32)
static void to_bf16(bf16 *out, const float *in, long n, GpuCtx ctx)
{
    LAUNCH(to_bf16_kernel, 1024, 256, 0, ctx.stream, out, in, n);
    LAUNCHED();
}

static void gemm(int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda, const bf16 *B, int ldb, float beta,
                 void *C, cudaDataType tc, int ldc, GpuCtx ctx)
{
    if (M == 0 || N == 0) return;
    CUBLAS_CHECK(cublasGemmEx(ctx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                              CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, tc, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
// The same over `count` products given by device arrays of pointers.
static void gemm_batched(int ta, int tb, int M, int N, int K, float alpha, const void *const *A, int lda, const void *const *B,
                         int ldb, float beta, void *const *C, cudaDataType tc, int ldc, int count, GpuCtx ctx)
{
    CUBLAS_CHECK(cublasGemmBatchedEx(ctx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                                     CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, tc, ldc, count, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}
// out[N, OC] (= or +=) inp[N, C] . w[OC, C]^T
static void linear_forward(void *out, cudaDataType to, const bf16 *inp, const bf16 *w, int N, int C, int OC, float beta,
                           GpuCtx ctx)
{
    gemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, beta, out, to, OC, ctx);
}
// dinp[N, C] (fp32; = or +=) dout[N, OC] . w[OC, C];  dw[OC, C] (fp32) += dout^T . inp
static void linear_backward(float *dinp, float beta, float *dw, const bf16 *dout, const bf16 *inp, const bf16 *w, int N, int C,
                            int OC, GpuCtx ctx)
{
    if (dinp) gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, beta, dinp, CUDA_R_32F, C, ctx);
    gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, CUDA_R_32F, C, ctx);
}

#endif
