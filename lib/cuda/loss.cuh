// Cross-entropy over the logits: each row's log-sum-exp and (masked) loss,
// and the logits' gradient.
#ifndef SIGMA_CUDA_LOSS_CUH
#define SIGMA_CUDA_LOSS_CUH

#include "cuda/common.cuh"

#include <stdint.h>

// ---------------------------------------------------------------- kernels

// One block per row, one pass over the logits: each thread keeps the
// running max and the sum of exponentials below it, then the block merges
// them.
__device__ static void softmax_merge(float &m, float &s, float m2, float s2)
{
    float M = fmaxf(m, m2);
    s = (m == -INFINITY ? 0.0f : s * __expf(m - M)) + (m2 == -INFINITY ? 0.0f : s2 * __expf(m2 - M));
    m = M;
}
__device__ static void softmax_add(float &m, float &s, float x)
{
    if (x > m) { s = s * __expf(m - x) + 1.0f; m = x; }
    else s += __expf(x - m);
}
static __global__ void crossentropy_forward_kernel(float *lse, float *rowloss, const float *logits, const uint32_t *targets,
                                                   const float *mask, int V)
{
    __shared__ float pm[32], ps[32];
    long n = blockIdx.x;
    const float *lg = logits + n * V;
    float m = -INFINITY, s = 0;
    if (V % 4 == 0)
        for (int v = threadIdx.x; v < V / 4; v += blockDim.x) {
            float4 x = ((const float4 *)lg)[v];
            softmax_add(m, s, x.x); softmax_add(m, s, x.y); softmax_add(m, s, x.z); softmax_add(m, s, x.w);
        }
    else
        for (int v = threadIdx.x; v < V; v += blockDim.x) softmax_add(m, s, lg[v]);
    for (int o = 16; o > 0; o >>= 1) softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = blockDim.x / 32;
    if (lane == 0) { pm[w] = m; ps[w] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < nw; i++) softmax_merge(pm[0], ps[0], pm[i], ps[i]);
        lse[n] = pm[0] + logf(ps[0]);
        rowloss[n] = (mask ? mask[n] : 1.0f) * (lse[n] - lg[targets[n]]);
    }
}
static __global__ void crossentropy_backward_kernel(bf16 *dlogits, const float *logits, const float *lse, const uint32_t *targets,
                                                    const float *mask, float wscale, int V)
{
    long n = blockIdx.x;
    float w = (mask ? mask[n] : 1.0f) * wscale, l = lse[n];
    int t = (int)targets[n];
    const float *lg = logits + n * V;
    bf16 *dl = dlogits + n * V;
    if (V % 4 == 0)
        for (int v = threadIdx.x; v < V / 4; v += blockDim.x) {
            float4 x = ((const float4 *)lg)[v];
            int v0 = 4 * v;
            __nv_bfloat162 a = __floats2bfloat162_rn((__expf(x.x - l) - (v0 == t)) * w, (__expf(x.y - l) - (v0 + 1 == t)) * w);
            __nv_bfloat162 b = __floats2bfloat162_rn((__expf(x.z - l) - (v0 + 2 == t)) * w, (__expf(x.w - l) - (v0 + 3 == t)) * w);
            ((__nv_bfloat162 *)dl)[2 * v] = a;
            ((__nv_bfloat162 *)dl)[2 * v + 1] = b;
        }
    else
        for (int v = threadIdx.x; v < V; v += blockDim.x) dl[v] = __float2bfloat16((__expf(lg[v] - l) - (v == t)) * w);
}

// ---------------------------------------------------------------- launchers

// lse[N] and rowloss[N] = mask[n] * (lse - logit[target]) from logits[N, V],
// targets[N] and mask[N] (optional: all ones).
static void crossentropy_forward(float *lse, float *rowloss, const float *logits, const uint32_t *targets, const float *mask, int N,
                                 int V, GpuCtx ctx)
{
    LAUNCH(crossentropy_forward_kernel, N, 512, 0, ctx.stream, lse, rowloss, logits, targets, mask, V);
    LAUNCHED();
}
// dlogits[N, V] (bf16) = (softmax - onehot) * mask[n] * wscale, from
// logits, lse, targets, mask as in the forward.
static void crossentropy_backward(bf16 *dlogits, const float *logits, const float *lse, const uint32_t *targets, const float *mask,
                                  float wscale, int N, int V, GpuCtx ctx)
{
    LAUNCH(crossentropy_backward_kernel, N, 512, 0, ctx.stream, dlogits, logits, lse, targets, mask, wscale, V);
    LAUNCHED();
}

#endif
