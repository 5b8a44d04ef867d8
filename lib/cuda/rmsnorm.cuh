// RMSNorm over rows, and the weight gradient of every norm of the model
// (the layers' and the final RMSNorm, and the QK-norm of rope.cuh).
#ifndef SIGMA_CUDA_RMSNORM_CUH
#define SIGMA_CUDA_RMSNORM_CUH

#include "cuda/common.cuh"

// ---------------------------------------------------------------- kernels

// One warp per row.
static __global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *xr = x + (long)n * C;
    float ss = 0;
    for (int i = lane; i < C; i += 32) ss += xr[i] * xr[i];
    float r = rsqrtf(warp_sum(ss) / C + eps);
    if (lane == 0) rstd[n] = r;
    for (int i = lane; i < C; i += 32) out[(long)n * C + i] = __float2bfloat16(xr[i] * r * w[i]);
}

// dx = dres + (g*w*r - x*k), k = dot(g*w, x) r^3 / C; one warp per row.
static __global__ void rmsnorm_backward_kernel(float *dx, bf16 *dx_bf, const float *dres, const float *g, const float *x,
                                               const float *w, const float *rstd, int N, int C)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *xr = x + (long)n * C, *gr = g + (long)n * C;
    float r = rstd[n], dot = 0;
    for (int i = lane; i < C; i += 32) dot += gr[i] * w[i] * xr[i];
    float k = warp_sum(dot) * r * r * r / C;
    for (int i = lane; i < C; i += 32) {
        float v = gr[i] * w[i] * r - xr[i] * k + (dres ? dres[(long)n * C + i] : 0.0f);
        dx[(long)n * C + i] = v;
        if (dx_bf) dx_bf[(long)n * C + i] = __float2bfloat16(v);
    }
}

// The weight gradient of every norm here: dw[C] += sum over rows r of
// g[r, c] * x[r, c] * rstd[r], where rows are (token, head) pairs: x of row r
// at x + (r / nh) * ldx + (r % nh) * C. Two passes in a fixed order:
// deterministic. First, partial[R / NORM_ROWS, C], one thread per chunk of
// NORM_ROWS rows and column, so that the grid fills the GPU whatever the
// shape (QK-norm has C = head_dim but N * heads rows); then one block per
// column sums its chunks.
#define NORM_ROWS 32
template <typename TX>
static __global__ void norm_weight_partial_kernel(float *partial, const float *g, const TX *x, const float *rstd, int R, int C,
                                                  int nh, int ldx)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    long chunk = i / C;
    int c = (int)(i % C);
    if (chunk * NORM_ROWS >= R) return;
    int lo = (int)chunk * NORM_ROWS, hi = min(R, lo + NORM_ROWS);
    float s = 0;
    for (int r = lo; r < hi; r++) s += g[(long)r * C + c] * to_f(x[(long)(r / nh) * ldx + (r % nh) * C + c]) * rstd[r];
    partial[i] = s;
}
static __global__ void norm_weight_finish_kernel(float *dw, const float *partial, int chunks, int C)
{
    int c = blockIdx.x;
    float s = 0;
    for (int k = threadIdx.x; k < chunks; k += blockDim.x) s += partial[(long)k * C + c];
    s = block_reduce<false>(s);
    if (threadIdx.x == 0) dw[c] += s;
}

// ---------------------------------------------------------------- launchers

// dw[C] += the norm weight's gradient from g[R, C] (the gradient of the
// normed rows before the weight), x (fp32 or bf16; row r at
// (r / nh) * ldx + (r % nh) * C) and rstd[R]; partial[cdiv(R, NORM_ROWS), C]
// scratch.
template <typename TX>
static void norm_weight_backward(float *dw, float *partial, const float *g, const TX *x, const float *rstd, int R, int C, int nh,
                                 int ldx, GpuCtx ctx)
{
    int chunks = cdiv(R, NORM_ROWS);
    LAUNCH(norm_weight_partial_kernel<TX>, cdiv((long)chunks * C, 256), 256, 0, ctx.stream, partial, g, x, rstd, R, C, nh, ldx);
    LAUNCH(norm_weight_finish_kernel, C, 256, 0, ctx.stream, dw, partial, chunks, C);
    LAUNCHED();
}

// out[N, C] (bf16) = x[N, C] * rstd * w[C]; rstd[N]
static void rmsnorm_forward(bf16 *out, float *rstd, const float *x, const float *w, int N, int C, float eps, GpuCtx ctx)
{
    LAUNCH(rmsnorm_forward_kernel, cdiv(N, 8), 256, 0, ctx.stream, out, rstd, x, w, N, C, eps);
    LAUNCHED();
}

// dx[N, C] = dres[N, C] (the residual's own gradient, optional) + the norm's
// backward of dout[N, C], with a bf16 copy dx_bf[N, C] (optional);
// dw[C] += the weight's gradient, partial its scratch (norm_weight_backward).
// x[N, C], w[C], rstd[N] as in the forward.
static void rmsnorm_backward(float *dx, bf16 *dx_bf, float *dw, float *partial, const float *dres, const float *dout, const float *x,
                             const float *w, const float *rstd, int N, int C, GpuCtx ctx)
{
    LAUNCH(rmsnorm_backward_kernel, cdiv(N, 8), 256, 0, ctx.stream, dx, dx_bf, dres, dout, x, w, rstd, N, C);
    LAUNCHED();
    norm_weight_backward<float>(dw, partial, dout, x, rstd, N, C, 1, C, ctx);
}

#endif
