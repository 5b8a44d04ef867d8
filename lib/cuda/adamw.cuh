// The optimizer: AdamW over the fp32 master weights (refreshing their bf16
// copy), and the gradients' global norm.
#ifndef SIGMA_CUDA_ADAMW_CUH
#define SIGMA_CUDA_ADAMW_CUH

#include "cuda/common.cuh"

#include <math.h>

extern "C" {
#include "model/adamw.h"
#include "model/model.h"
}

// ---------------------------------------------------------------- kernels

static __global__ void adamw_kernel(float *param, bf16 *param_bf, float *m, float *v, const float *grad, long n, float lr, float b1,
                                    float b2, float c1, float c2, float eps, float wd, float grad_scale)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * g, vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float w = param[i];
        w -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * w);
        param[i] = w;
        param_bf[i] = __float2bfloat16(w);
    }
}

#define NORM_BLOCKS 1024
// partial[NORM_BLOCKS] sums of squares over a fixed grid: deterministic.
static __global__ void sumsq_partial_kernel(double *partial, const float *g, long n)
{
    double s = 0;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) s += (double)g[i] * g[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// ---------------------------------------------------------------- launchers

// One AdamW step s over the weights [own_lo, own_hi) of the tensor table
// (tensors[n_tensors], offsets into the buffers), weight decay on matrices
// only: params[P] (fp32) and params_bf[P] (its bf16 copy) from grads[P],
// with the moments m and v of those weights alone (m[0] is weight own_lo's).
static void adamw_update(float *params, bf16 *params_bf, float *m, float *v, const float *grads, const ParamTensor *tensors,
                         int n_tensors, size_t own_lo, size_t own_hi, const AdamWStep *s, GpuCtx ctx)
{
    float c1 = 1.0f / (1.0f - powf(s->beta1, (float)s->t)), c2 = 1.0f / (1.0f - powf(s->beta2, (float)s->t));
    // consecutive tensors of the same kind (decayed matrices, or not) in one launch
    for (int i = 0; i < n_tensors;) {
        int decay = tensors[i].ndim == 2, j = i;
        size_t lo = tensors[i].offset, hi = lo;
        while (j < n_tensors && (tensors[j].ndim == 2) == decay && tensors[j].offset == hi) hi += tensors[j++].numel;
        i = j;
        lo = lo > own_lo ? lo : own_lo;
        hi = hi < own_hi ? hi : own_hi;
        if (lo >= hi) continue;
        LAUNCH(adamw_kernel, cdiv((long)(hi - lo), 256 * 8) < 4096 ? cdiv((long)(hi - lo), 256 * 8) : 4096, 256, 0, ctx.stream,
               params + lo, params_bf + lo, m + (lo - own_lo), v + (lo - own_lo), grads + lo, (long)(hi - lo), s->lr, s->beta1,
               s->beta2, c1, c2, s->eps, decay ? s->weight_decay : 0.0f, s->grad_scale);
        LAUNCHED();
    }
}

// The L2 norm of grads[n], through partial[NORM_BLOCKS] (scratch): waits
// for the stream.
static double gradient_norm(double *partial, const float *grads, long n, GpuCtx ctx)
{
    LAUNCH(sumsq_partial_kernel, NORM_BLOCKS, 256, 0, ctx.stream, partial, grads, n);
    LAUNCHED();
    double part[NORM_BLOCKS], s = 0;
    copy_to_host(part, partial, sizeof part, ctx);
    for (int i = 0; i < NORM_BLOCKS; i++) s += part[i];
    return sqrt(s);
}

#endif
