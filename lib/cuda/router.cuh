// The router: logits from the normed input, softmax and top-k per token in
// fp32, the balance statistics of the layer (column sums the host turns
// into the balance losses), and the backward through the softmax into the
// router's weight and input.
#ifndef SIGMA_CUDA_ROUTER_CUH
#define SIGMA_CUDA_ROUTER_CUH

#include "cuda/common.cuh"
#include "cuda/matmul.cuh"

// ---------------------------------------------------------------- kernels

// One warp per token: p = softmax(z) over all E experts, lse, the k experts
// of largest p (+ bias; ties to the lower index), and the per-token terms the
// balance statistics sum: q = softmax(z / tau) (top-1 LBL) and
// scal[n] = {p of the first choice, lse^2, entropy}.
static __global__ void router_forward_kernel(float *p, float *lse, int *sel, float *q, float *scal, const float *z,
                                             const float *bias, int N, int E, int k, float tau)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *zn = z + (long)n * E;
    float *pn = p + (long)n * E;
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, zn[e]);
    mx = warp_max(mx);
    float s = 0;
    for (int e = lane; e < E; e += 32) s += expf(zn[e] - mx);
    s = warp_sum(s);
    float ent = 0;
    for (int e = lane; e < E; e += 32) {
        float v = expf(zn[e] - mx) / s;
        pn[e] = v;
        if (v > 0) ent -= v * logf(v);
    }
    ent = warp_sum(ent);
    float l = mx + logf(s);
    if (lane == 0) lse[n] = l;
    if (q) {
        float qs = 0;
        for (int e = lane; e < E; e += 32) qs += expf((zn[e] - mx) / tau);
        qs = warp_sum(qs);
        for (int e = lane; e < E; e += 32) q[(long)n * E + e] = expf((zn[e] - mx) / tau) / qs;
    }
    __syncwarp();
    for (int j = 0; j < k; j++) {   // k passes of argmax: k is small
        float bv = -INFINITY;
        int be = E;
        for (int e = lane; e < E; e += 32) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= sel[(long)n * k + i] == e;
            float v = pn[e] + (bias ? bias[e] : 0.0f);
            if (!taken && (v > bv || (v == bv && e < be))) { bv = v; be = e; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (ov > bv || (ov == bv && oe < be)) { bv = ov; be = oe; }
        }
        if (lane == 0) {
            if (be == E)   // every value NaN: the first expert not taken, as the CPU does
                for (be = 0;; be++) {
                    int taken = 0;
                    for (int i = 0; i < j; i++) taken |= sel[(long)n * k + i] == be;
                    if (!taken) break;
                }
            sel[(long)n * k + j] = be;
        }
        __syncwarp();
    }
    if (lane == 0) {
        scal[(long)n * 3 + 0] = pn[sel[(long)n * k]];
        scal[(long)n * 3 + 1] = l * l;
        scal[(long)n * 3 + 2] = ent;
    }
}

// out[C] = column sums of in[N, C] in double, one block per column, the same
// tree every time.
static __global__ void column_sums_kernel(double *out, const float *in, int N, int C)
{
    int c = blockIdx.x;
    double s = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) s += in[(long)n * C + c];
    s = block_sum_double(s);
    if (threadIdx.x == 0) out[c] = s;
}

// One warp per token: dz[N, E] (bf16) from the gradient of the probabilities
// (the combine's dpsel at the chosen experts, lbl[e] for every expert, gp at
// the first choice) through the softmax, plus the top-1 LBL's term through
// q = softmax(z / tau) (gf[e], tau_n = tau * N) and the z-loss's (zc = d/d lse).
static __global__ void router_backward_kernel(bf16 *dz, const float *p, const float *q, const float *lse, const int *sel,
                                              const float *dpsel, const float *lbl, const float *gf, float gp, float tau_n,
                                              float zc, int N, int E, int k)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *pn = p + (long)n * E;
    const int *sn = sel + (long)n * k;
    float dot = 0, dotq = 0;
    for (int e = lane; e < E; e += 32) {
        float dp = lbl ? lbl[e] : 0.0f;
        for (int j = 0; j < k; j++) dp += sn[j] == e ? dpsel[(long)n * k + j] : 0.0f;
        if (e == sn[0]) dp += gp;
        dot += pn[e] * dp;
        if (gf) dotq += q[(long)n * E + e] * gf[e];
    }
    dot = warp_sum(dot);
    dotq = warp_sum(dotq);
    for (int e = lane; e < E; e += 32) {
        float dp = lbl ? lbl[e] : 0.0f;
        for (int j = 0; j < k; j++) dp += sn[j] == e ? dpsel[(long)n * k + j] : 0.0f;
        if (e == sn[0]) dp += gp;
        float g = pn[e] * (dp - dot) + zc * lse[n] * pn[e];
        if (gf) g += q[(long)n * E + e] * (gf[e] - dotq) / tau_n;
        dz[(long)n * E + e] = __float2bfloat16(g);
    }
}

// ---------------------------------------------------------------- launchers

// From the normed input inp[N, d] and the router's weight w[E, d]: the
// logits z[N, E], probabilities p[N, E], lse[N], the top-k experts
// sel[N*k] (by p + bias[E], bias optional), q[N, E] = softmax(z / tau)
// (only for the top-1 LBL; NULL otherwise), the per-token terms scal[N, 3],
// and the balance statistics stats[2E + 3]: sum of p per expert, sum of q
// per expert (when q), sums of scal's columns.
static void router_forward(float *z, float *p, float *lse, int *sel, float *q, float *scal, double *stats, const bf16 *inp,
                           const bf16 *w, const float *bias, int N, int d, int E, int k, float tau, GpuCtx ctx)
{
    linear_forward(z, CUDA_R_32F, inp, w, N, d, E, 0.0f, ctx);
    LAUNCH(router_forward_kernel, cdiv(N, 8), 256, 0, ctx.stream, p, lse, sel, q, scal, z, bias, N, E, k, tau);
    LAUNCHED();
    LAUNCH(column_sums_kernel, E, 256, 0, ctx.stream, stats, p, N, E);
    if (q) LAUNCH(column_sums_kernel, E, 256, 0, ctx.stream, stats + E, q, N, E);
    LAUNCH(column_sums_kernel, 3, 256, 0, ctx.stream, stats + 2 * E, scal, N, 3);
    LAUNCHED();
}

// dinp[N, d] += the router's input gradient and dw[E, d] += its weight's,
// through dz[N, E] (scratch) from: the combine's dpsel[N*k], the balance
// terms' per-expert coefficients lbl[E] (LBL; optional) and gf[E] (top-1
// LBL; optional, with q[N, E] and tau_n = tau * N), gp (the top-1 LBL's
// term at the first choice) and the z-loss's zc; p, lse, sel, inp, w as in
// the forward.
static void router_backward(float *dinp, float *dw, bf16 *dz, const float *dpsel, const float *lbl, const float *gf, float gp,
                            float tau_n, float zc, const float *p, const float *q, const float *lse, const int *sel,
                            const bf16 *inp, const bf16 *w, int N, int d, int E, int k, GpuCtx ctx)
{
    LAUNCH(router_backward_kernel, cdiv(N, 8), 256, 0, ctx.stream, dz, p, q, lse, sel, dpsel, lbl, gf, gp, tau_n, zc, N, E, k);
    LAUNCHED();
    linear_backward(dinp, 1.0f, dw, dz, inp, w, N, d, E, ctx);
}

// Inference: the logits z[N, E], probabilities p[N, E], lse[N], the top-k
// choices sel[N*k] (by p + bias, optional) and scal[N, 3], as
// router_forward, without the balance statistics no step needs.
static void router_select(float *z, float *p, float *lse, int *sel, float *scal, const bf16 *inp, const bf16 *w, const float *bias,
                          int N, int d, int E, int k, GpuCtx ctx)
{
    linear_forward(z, CUDA_R_32F, inp, w, N, d, E, 0.0f, ctx);
    LAUNCH(router_forward_kernel, cdiv(N, 8), 256, 0, ctx.stream, p, lse, sel, (float *)NULL, scal, z, bias, N, E, k, 1.0f);
    LAUNCHED();
}

#endif
