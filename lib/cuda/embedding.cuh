// Token embedding: rows of the fp32 master table in, and their gradients
// summed back per distinct token without atomics.
#ifndef SIGMA_CUDA_EMBEDDING_CUH
#define SIGMA_CUDA_EMBEDDING_CUH

#include "cuda/common.cuh"

#include <stdint.h>

// ---------------------------------------------------------------- kernels

static __global__ void embedding_forward_kernel(float *x, const uint32_t *inputs, const float *embed, int N, int d)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d;
    x[i] = embed[(long)inputs[n] * d + i % d];
}

// One block per distinct token (pos sorted by token, segments seg[u] ..
// seg[u+1]), summing its rows in position order.
static __global__ void embedding_backward_kernel(float *dembed, const float *dx, const int *pos, const int *seg,
                                                 const uint32_t *inputs, int d)
{
    int u = blockIdx.x, lo = seg[u], hi = seg[u + 1];
    float *row = dembed + (long)inputs[pos[lo]] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float s = 0;
        for (int j = lo; j < hi; j++) s += dx[(long)pos[j] * d + i];
        row[i] += s;
    }
}

// ---------------------------------------------------------------- launchers

// x[N, d] = embed[inputs[n]] (fp32 master rows); inputs[N], embed[V, d]
static void embedding_forward(float *x, const uint32_t *inputs, const float *embed, int N, int d, GpuCtx ctx)
{
    LAUNCH(embedding_forward_kernel, cdiv((long)N * d, 256), 256, 0, ctx.stream, x, inputs, embed, N, d);
    LAUNCHED();
}

// dembed[V, d] += dx[N, d] summed over the positions of each distinct token,
// in position order. pos[N]: the positions sorted by token (route_sort_tokens),
// seg[n_seg + 1]: where each token's run starts; inputs[N].
static void embedding_backward(float *dembed, const float *dx, const int *pos, const int *seg, const uint32_t *inputs, int n_seg,
                               int d, GpuCtx ctx)
{
    LAUNCH(embedding_backward_kernel, n_seg, 256, 0, ctx.stream, dembed, dx, pos, seg, inputs, d);
    LAUNCHED();
}

#endif
