// QK-norm + RoPE: per (token, head), an RMSNorm over the head's vector,
// then the rotate-half rotary embedding, as model.c's qknorm_rope_*. A
// token is rotated by its position: pos[n] in packed rows (model.h), else
// its place in its row, n % T, as model.c's position().
#ifndef SIGMA_CUDA_ROPE_CUH
#define SIGMA_CUDA_ROPE_CUH

#include "cuda/common.cuh"
#include "cuda/rmsnorm.cuh"

// ---------------------------------------------------------------- kernels

// The position of token n (model.c's position()): pos[n], or n % T when pos is NULL.
__device__ static inline int rope_position(const int *pos, int n, int T) { return pos ? pos[n] : n % T; }

// One warp per (token, head).
static __global__ void qknorm_rope_forward_kernel(bf16 *out, float *rstd, const bf16 *x, int ldx, const float *w,
                                                  const float *cosv, const float *sinv, const int *pos, int N, int T, int nh, int hd,
                                                  float eps)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * nh) return;
    int n = r / nh, h = r % nh, half = hd / 2, p = rope_position(pos, n, T);
    const bf16 *v = x + (long)n * ldx + h * hd;
    bf16 *o = out + (long)r * hd;
    const float *cs = cosv + (long)p * half, *sn = sinv + (long)p * half;
    float ss = 0;
    for (int i = lane; i < hd; i += 32) { float a = to_f(v[i]); ss += a * a; }
    float rs = rsqrtf(warp_sum(ss) / hd + eps);
    if (lane == 0) rstd[r] = rs;
    for (int i = lane; i < half; i += 32) {
        float a = to_f(v[i]) * rs * w[i], b = to_f(v[i + half]) * rs * w[i + half];
        o[i] = __float2bfloat16(a * cs[i] - b * sn[i]);
        o[i + half] = __float2bfloat16(b * cs[i] + a * sn[i]);
    }
}

// The rotation's transpose, then the norm's backward; one warp per (token, head).
static __global__ void qknorm_rope_backward_kernel(bf16 *dx, int ldx, float *dn, const bf16 *dout, const bf16 *x,
                                                   const float *rstd, const float *w, const float *cosv, const float *sinv,
                                                   const int *pos, int N, int T, int nh, int hd)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * nh) return;
    int n = r / nh, h = r % nh, half = hd / 2, p = rope_position(pos, n, T);
    const bf16 *v = x + (long)n * ldx + h * hd, *g = dout + (long)r * hd;
    const float *cs = cosv + (long)p * half, *sn = sinv + (long)p * half;
    float *dr = dn + (long)r * hd;
    float rs = rstd[r], dot = 0;
    for (int i = lane; i < half; i += 32) {
        float ga = to_f(g[i]), gb = to_f(g[i + half]);
        float a = ga * cs[i] + gb * sn[i], b = gb * cs[i] - ga * sn[i];
        dr[i] = a;
        dr[i + half] = b;
        dot += a * w[i] * to_f(v[i]) + b * w[i + half] * to_f(v[i + half]);
    }
    float k = warp_sum(dot) * rs * rs * rs / hd;
    __syncwarp();
    for (int i = lane; i < hd; i += 32)
        dx[(long)n * ldx + h * hd + i] = __float2bfloat16(dr[i] * w[i] * rs - to_f(v[i]) * k);
}

// ---------------------------------------------------------------- launchers

// out[N, nh*hd] (bf16, contiguous) from x (bf16, [N, nh*hd] at row stride
// ldx) and the norm weight w[hd]; rstd[N*nh]; cosv, sinv [T, hd/2] the
// rotation's tables; pos[N] (device) each token's position in its
// document, or NULL: its place in its row of T.
static void qknorm_rope_forward(bf16 *out, float *rstd, const bf16 *x, int ldx, const float *w, const float *cosv,
                                const float *sinv, const int *pos, int N, int T, int nh, int hd, float eps, GpuCtx ctx)
{
    LAUNCH(qknorm_rope_forward_kernel, cdiv(N * nh, 8), 256, 0, ctx.stream, out, rstd, x, ldx, w, cosv, sinv, pos, N, T, nh, hd,
           eps);
    LAUNCHED();
}

// dx (bf16, [N, nh*hd] at row stride ldx) from dout[N, nh*hd] (bf16), and
// dw[hd] += the norm weight's gradient; dn[N*nh, hd] (fp32) keeps the
// gradient of the normed vector for it, partial is its scratch
// (norm_weight_backward). x, rstd, w, cosv, sinv, pos as in the forward.
static void qknorm_rope_backward(bf16 *dx, int ldx, float *dw, float *dn, float *partial, const bf16 *dout, const bf16 *x,
                                 const float *rstd, const float *w, const float *cosv, const float *sinv, const int *pos, int N,
                                 int T, int nh, int hd, GpuCtx ctx)
{
    LAUNCH(qknorm_rope_backward_kernel, cdiv(N * nh, 8), 256, 0, ctx.stream, dx, ldx, dn, dout, x, rstd, w, cosv, sinv, pos, N, T,
           nh, hd);
    LAUNCHED();
    norm_weight_backward<bf16>(dw, partial, dn, x, rstd, N * nh, hd, nh, ldx, ctx);
}

#endif
