// The Sigma-MoE model on an NVIDIA GPU, forward and backward: see
// gpu_model.h for the precision, model.h for the model, and model.c (the
// CPU reference) for the same algorithm in plain C. Layout as there:
// checks, kernels in forward/backward pairs (outputs first, then inputs,
// then sizes), matrix products, buffers, then the forward and backward
// passes that call them in order and in reverse. N = B*T tokens, A = N*k
// (token, slot) assignments, row-major throughout.
//
// The MoE layer: an fp32 router kernel (softmax and top-k per token), the
// counting sort of assignments by expert on the host (route_sort, the same
// code as the CPU's, one small copy each way per layer), a gather, then
// per-expert cuBLAS products over each expert's rows, and a
// probability-weighted combine written as a gather (no atomics). With
// SIGMA_EXPERTS=grouped, the sort runs on the device and each product is
// one grouped kernel over all experts (grouped.cu): no host round trip.
// Attention: cuBLAS batched products per (sequence, head) around a causal
// softmax kernel, the scores recomputed in backward; or, with
// SIGMA_ATTENTION=flash, fused flash-style kernels (flash.cu) for head
// sizes of 16 to 128 in steps of 16. Either way only each row's
// log-sum-exp is kept between forward and backward.
#include "cuda/gpu_model.h"
#include "cuda/flash.h"
#include "cuda/grouped.cuh"

#include "cuda/common.cuh"

#include <cublas_v2.h>
#include <cuda_profiler_api.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "model/route.h"
}

#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)
static void cublas_check(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS) die_at(file, line, "cuBLAS: %s: status %d", what, (int)s);
}

// ---------------------------------------------------------------- device helpers

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
__device__ static double block_sum_double(double v)
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
__device__ static float to_f(float x) { return x; }
__device__ static float to_f(bf16 x) { return __bfloat162float(x); }

// ---------------------------------------------------------------- kernels: embedding

// x[N, d] = embed[inputs[n]] (fp32 master rows)
__global__ void embed_forward(float *x, const uint32_t *inputs, const float *embed, int N, int d)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d;
    x[i] = embed[(long)inputs[n] * d + i % d];
}

// dembed[tok] += sum of dx over the positions of each distinct token, in
// position order: one block per distinct token (pos sorted by token, segments
// seg[u] .. seg[u+1]).
__global__ void embed_backward(float *dembed, const float *dx, const int *pos, const int *seg, const uint32_t *inputs, int d)
{
    int u = blockIdx.x, lo = seg[u], hi = seg[u + 1];
    float *row = dembed + (long)inputs[pos[lo]] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float s = 0;
        for (int j = lo; j < hi; j++) s += dx[(long)pos[j] * d + i];
        row[i] += s;
    }
}

// ---------------------------------------------------------------- kernels: RMSNorm

// out[N, C] (bf16) = x * rstd * w; rstd[N]; one warp per row.
__global__ void rmsnorm_forward(bf16 *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
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

// dx[N, C] = dres + (g*w*r - x*k), k = dot(g*w, x) r^3 / C, with dres
// (the residual's own gradient) optional and a bf16 copy optional; the
// weight's gradient is norm_weight_backward's.
__global__ void rmsnorm_backward(float *dx, bf16 *dx_bf, const float *dres, const float *g, const float *x, const float *w,
                                 const float *rstd, int N, int C)
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
__global__ void norm_weight_partial(float *partial, const float *g, const TX *x, const float *rstd, int R, int C, int nh, int ldx)
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
__global__ void norm_weight_finish(float *dw, const float *partial, int chunks, int C)
{
    int c = blockIdx.x;
    float s = 0;
    for (int k = threadIdx.x; k < chunks; k += blockDim.x) s += partial[(long)k * C + c];
    s = block_reduce<false>(s);
    if (threadIdx.x == 0) dw[c] += s;
}

// ---------------------------------------------------------------- kernels: QK-norm + RoPE

// Per (token, head): RMSNorm over head_dim with w, then rotate-half RoPE.
// out[N, nh*hd] (bf16, contiguous) from x (bf16, row stride ldx); rstd[N*nh].
// One warp per (token, head).
__global__ void qknorm_rope_forward(bf16 *out, float *rstd, const bf16 *x, int ldx, const float *w, const float *cosv,
                                    const float *sinv, int N, int T, int nh, int hd, float eps)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * nh) return;
    int n = r / nh, h = r % nh, half = hd / 2;
    const bf16 *v = x + (long)n * ldx + h * hd;
    bf16 *o = out + (long)r * hd;
    const float *cs = cosv + (long)(n % T) * half, *sn = sinv + (long)(n % T) * half;
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

// dx (bf16, row stride ldx) from dout[N, nh*hd] (bf16): the rotation's
// transpose, then the norm's backward; dn[N*nh, hd] (fp32) keeps the
// gradient of the normed vector for the weight's gradient.
__global__ void qknorm_rope_backward(bf16 *dx, int ldx, float *dn, const bf16 *dout, const bf16 *x, const float *rstd,
                                     const float *w, const float *cosv, const float *sinv, int N, int T, int nh, int hd)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * nh) return;
    int n = r / nh, h = r % nh, half = hd / 2;
    const bf16 *v = x + (long)n * ldx + h * hd, *g = dout + (long)r * hd;
    const float *cs = cosv + (long)(n % T) * half, *sn = sinv + (long)(n % T) * half;
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

// ---------------------------------------------------------------- kernels: attention

// One row (b, h, t) per block: the causal softmax of scores S (already
// scaled), probabilities P (bf16, zero above the diagonal) and lse.
__global__ void attention_softmax_forward(bf16 *P, float *lse, const float *S, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T);
    const float *s = S + row * T;
    bf16 *p = P + row * T;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = block_reduce<true>(mx);
    float sum = 0;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) sum += expf(s[j] - mx);
    sum = block_reduce<false>(sum);
    float l = mx + logf(sum);
    if (threadIdx.x == 0) lse[row] = l;
    for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] = __float2bfloat16(j <= t ? expf(s[j] - l) : 0.0f);
}

// Backward, first half: P recomputed from the scores and lse.
__global__ void attention_probs(bf16 *P, const float *S, const float *lse, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T);
    for (int j = threadIdx.x; j < T; j += blockDim.x)
        P[row * T + j] = __float2bfloat16(j <= t ? expf(S[row * T + j] - lse[row]) : 0.0f);
}
// Second half: dS = P (dP - sum_j P_j dP_j), written over P.
__global__ void attention_softmax_backward(bf16 *P_dS, const float *dP, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T);
    bf16 *p = P_dS + row * T;
    const float *dp = dP + row * T;
    float dot = 0;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) dot += to_f(p[j]) * dp[j];
    dot = block_reduce<false>(dot);
    for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] = __float2bfloat16(j <= t ? to_f(p[j]) * (dp[j] - dot) : 0.0f);
}

// dkv[N, KV*hd] (bf16, row stride ld) = the sum over each KV head's group of
// query heads of per-head gradients dh[B, H, T, hd] (fp32), in head order.
__global__ void group_sum(bf16 *dkv, int ld, const float *dh, int B, int T, int H, int KV, int hd)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)B * T * KV * hd) return;
    int c = (int)(i % hd), kh = (int)(i / hd % KV), t = (int)(i / ((long)hd * KV) % T), b = (int)(i / ((long)hd * KV * T));
    int group = H / KV;
    float s = 0;
    for (int g = 0; g < group; g++) s += dh[(((long)b * H + kh * group + g) * T + t) * hd + c];
    dkv[((long)b * T + t) * ld + kh * hd + c] = __float2bfloat16(s);
}

// ---------------------------------------------------------------- kernels: router

// One warp per token: p = softmax(z) over all E experts, lse, the k experts
// of largest p (+ bias; ties to the lower index), and the per-token terms the
// balance statistics sum: q = softmax(z / tau) (top-1 LBL) and
// scal[n] = {p of the first choice, lse^2, entropy}.
__global__ void router_forward(float *p, float *lse, int *sel, float *q, float *scal, const float *z, const float *bias, int N,
                               int E, int k, float tau)
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
__global__ void column_sums(double *out, const float *in, int N, int C)
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
__global__ void router_backward(bf16 *dz, const float *p, const float *q, const float *lse, const int *sel, const float *dpsel,
                                const float *lbl, const float *gf, float gp, float tau_n, float zc, int N, int E, int k)
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

// ---------------------------------------------------------------- kernels: experts

// xe[A, d] = u[order[r] / k]: each assignment's token, in expert order.
__global__ void gather_rows(bf16 *xe, const bf16 *u, const int *order, int A, int d, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * d) return;
    long r = i / d;
    xe[i] = u[(long)(order[r] / k) * d + i % d];
}

// act[A, de] = silu(gu[:, :de]) * gu[:, de:]
__global__ void swiglu_forward(bf16 *act, const bf16 *gu, int A, int de)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * de) return;
    long r = i / de, c = i % de;
    float g = to_f(gu[r * 2 * de + c]), u = to_f(gu[r * 2 * de + de + c]);
    act[i] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
}
// dgu[A, 2de] from dact[A, de]
__global__ void swiglu_backward(bf16 *dgu, const float *dact, const bf16 *gu, int A, int de)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * de) return;
    long r = i / de, c = i % de;
    float g = to_f(gu[r * 2 * de + c]), u = to_f(gu[r * 2 * de + de + c]), sg = 1.0f / (1.0f + expf(-g)), d = dact[i];
    dgu[r * 2 * de + c] = __float2bfloat16(d * u * sg * (1.0f + g * (1.0f - sg)));
    dgu[r * 2 * de + de + c] = __float2bfloat16(d * g * sg);
}

// out[N, d] = h + sum over a token's k choices of p * ye[row]: a gather.
__global__ void combine_forward(float *out, const float *h, const bf16 *ye, const float *p, const int *sel, const int *row,
                                int N, int d, int E, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d, c = i % d;
    float v = h[i];
    for (int s = 0; s < k; s++) {
        int as = (int)n * k + s;
        v += p[n * E + sel[as]] * to_f(ye[(long)row[as] * d + c]);
    }
    out[i] = v;
}
// One warp per assignment: dye[row] = p * dout[n] (bf16), dpsel = dout[n] . ye[row].
__global__ void combine_backward(bf16 *dye, float *dpsel, const float *dout, const bf16 *ye, const float *p, const int *sel,
                                 const int *row, int N, int d, int E, int k)
{
    int as = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (as >= N * k) return;
    int n = as / k, r = row[as];
    float pe = p[(long)n * E + sel[as]], dot = 0;
    for (int c = lane; c < d; c += 32) {
        float g = dout[(long)n * d + c];
        dot += g * to_f(ye[(long)r * d + c]);
        dye[(long)r * d + c] = __float2bfloat16(pe * g);
    }
    dot = warp_sum(dot);
    if (lane == 0) dpsel[as] = dot;
}
// du[N, d] = sum over a token's k assignments of dxe[row] (fixed order).
__global__ void scatter_rows(float *du, const float *dxe, const int *row, int N, int d, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d, c = i % d;
    float s = 0;
    for (int j = 0; j < k; j++) s += dxe[(long)row[n * k + j] * d + c];
    du[i] = s;
}

// ---------------------------------------------------------------- kernels: loss

// One block per row, one pass over the logits: each thread keeps the
// running max and the sum of exponentials below it, then the block merges
// them. lse[N] and rowloss[N] = w * (lse - logit[target]).
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
__global__ void crossentropy_forward(float *lse, float *rowloss, const float *logits, const uint32_t *targets, const float *mask,
                                     int V)
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
// dlogits[N, V] (bf16) = (softmax - onehot) * mask[n] * wscale
__global__ void crossentropy_backward(bf16 *dlogits, const float *logits, const float *lse, const uint32_t *targets,
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

// ---------------------------------------------------------------- kernels: optimizer

__global__ void to_bf16(bf16 *out, const float *in, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(in[i]);
}

__global__ void adamw_kernel(float *param, bf16 *param_bf, float *m, float *v, const float *grad, long n, float lr, float b1,
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
__global__ void sumsq_partial(double *partial, const float *g, long n)
{
    double s = 0;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) s += (double)g[i] * g[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// ---------------------------------------------------------------- matrix products

// Row-major C[M, N] (ldc) = alpha * op(A)[M, K] . op(B)[K, N] + beta * C,
// A and B bf16, C bf16 or fp32, fp32 accumulation. cuBLAS is column-major:
// a row-major X is its transpose there, so C^T = op(B)^T op(A)^T.
static cublasHandle_t cublas, cur;   // the main handle (legacy default stream); the one gemm uses now
static int live_models;              // the handles go with the last model
// The experts' products are small: spread over a few streams (each with its
// own handle, so no two share a cuBLAS workspace) they run side by side.
// These streams are blocking: the default stream's next kernel waits for
// them, and they wait for its earlier ones. Experts write disjoint memory.
#define EXPERT_STREAMS 4
static cudaStream_t side_stream[EXPERT_STREAMS];
static cublasHandle_t side[EXPERT_STREAMS];
static int n_streams = EXPERT_STREAMS;   // SIGMA_EXPERT_STREAMS=1: one after another, for comparison
static void on_expert_stream(int e) { cur = side[e % n_streams]; }
static void on_main_stream(void) { cur = cublas; }
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda, const bf16 *B, int ldb, float beta,
                 void *C, cudaDataType tc, int ldc)
{
    if (M == 0 || N == 0) return;
    CUBLAS_CHECK(cublasGemmEx(cur, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                              CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, tc, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
// The same over `count` products given by device arrays of pointers.
static void gemm_batched(int ta, int tb, int M, int N, int K, float alpha, const void *const *A, int lda, const void *const *B,
                         int ldb, float beta, void *const *C, cudaDataType tc, int ldc, int count)
{
    CUBLAS_CHECK(cublasGemmBatchedEx(cur, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                                     CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, tc, ldc, count, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}
// out[N, OC] (= or +=) inp[N, C] . w[OC, C]^T
static void linear_forward(void *out, cudaDataType to, const bf16 *inp, const bf16 *w, int N, int C, int OC, float beta)
{
    gemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, beta, out, to, OC);
}
// dinp[N, C] (fp32; = or +=) dout[N, OC] . w[OC, C];  dw[OC, C] (fp32) += dout^T . inp
static void linear_backward(float *dinp, float beta, float *dw, const bf16 *dout, const bf16 *inp, const bf16 *w, int N, int C,
                            int OC)
{
    if (dinp) gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, beta, dinp, CUDA_R_32F, C);
    gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, CUDA_R_32F, C);
}

// ---------------------------------------------------------------- buffers

// Offsets (in elements) of one layer's tensors in the parameter buffers, the
// order of model.h.
typedef struct {
    size_t ln1, wqkv, wo, qnorm, knorm, ln2, router, expert;
} LayerOffsets;

typedef struct {
    float *x;                  // [N, d] residual stream entering the layer
    bf16 *ln1;                 // [N, d]
    float *r1;                 // [N]
    bf16 *qkv;                 // [N, qd + 2 kvd] projections (q, k before their norm; v)
    bf16 *qr, *kr;             // [N, qd], [N, kvd] normed and rotated
    float *qrs, *krs;          // [N*H], [N*KV]
    float *att_lse;            // [B*H*T]
    bf16 *ao;                  // [N, qd] attention output
    float *h;                  // [N, d] after the attention residual
    bf16 *ln2;                 // [N, d]
    float *r2;                 // [N]
    float *z, *p, *q;          // [N, E] router logits, probabilities, softmax(z / tau)
    float *lse;                // [N]
    float *scal;               // [N, 3] per-token terms of the balance statistics
    int *sel, *order, *row;    // [A]
    int *offs, *tiles;         // [E+1] each: sorted rows and grouped tiles of each expert (grouped experts)
    bf16 *xe;                  // [A, d] expert inputs, sorted by expert
    bf16 *gu;                  // [A, 2 de] gate | up (shared scratch when recomputed)
    bf16 *act;                 // [A, de]
    bf16 *ye;                  // [A, d]
    double *stats;             // [2E + 3]: sum p, sum q per expert; sum of scal's columns (this layer's row of GpuModel.stats)
} LayerActs;

struct GpuModel {
    Config alloc, cfg;         // buffers' top-k; the last forward's
    int Bmax, Tmax, recompute, verbose, flash, grouped, tile_rows;
    size_t n_params;
    int n_tensors;
    ParamTensor *tensors;      // host copy of the table
    size_t embed, norm, head;
    LayerOffsets lo[MODEL_MAX_LAYERS];
    float *params;             // [n_params] fp32 master
    bf16 *params_bf;           // [n_params]
    float *grads;              // [n_params]
    float *moments;            // [2 * n_params]
    char *acts_base;           // one allocation for everything below
    size_t acts_bytes;
    LayerActs L[MODEL_MAX_LAYERS];
    float *x_final;            // [N, d] leaving the last layer
    bf16 *lnf;                 // [N, d]
    float *rf;                 // [N]
    float *logits;             // [N, V]
    float *lsef, *rowloss;     // [N]
    uint32_t *inputs, *targets;// [N]
    float *mask;               // [N] or unused
    float *cosv, *sinv;        // [T, hd/2]
    float *bias;               // [L*E] expert bias
    float *coef;               // [L, 2E] the router backward's per-expert terms
    int *emb_pos, *emb_seg;    // [N], [N+1] positions sorted by token
    float *counts;             // [L*E] tokens per expert (grouped experts: counted on the device)
    int *route_scratch;        // grouped_route_scratch(Amax, E)
    // scratch, reused layer by layer
    float *S;                  // [B*H, T, T] attention scores, then dP; with flash, D [N*H]
    bf16 *P;                   // [B*H, T, T] probabilities, then dS; none with flash
    float *dkh, *dvh;          // [B*H, T, hd] per query head; none with flash (it sums the groups)
    float *dx, *dh, *du, *dln; // [N, d]
    bf16 *dh_bf;               // [N, d]
    bf16 *dao, *dqr, *dkr;     // [N, qd], [N, qd], [N, kvd]
    bf16 *dqkv;                // [N, qd + 2 kvd]
    float *dn;                 // [N*H, hd] QK-norm weight-gradient input
    float *norm_partial;       // [R / NORM_ROWS, C] of the largest norm: the model's (R = N, C = d) or QK's (N*H, hd)
    bf16 *dz;                  // [N, E]
    float *dpsel;              // [Amax]
    bf16 *dye, *dgu;           // [Amax, d], [Amax, 2 de]
    float *dact, *dxe;         // [Amax, de], [Amax, d]
    bf16 *dlogits;             // [N, V]
    double *norm_blocks;       // [NORM_BLOCKS]
    void **ptrs;               // attention pointer arrays, see attention_pointers
    int ptr_B, ptr_T;
    // host mirrors of the last forward
    int B, T, have_forward, have_mask, kused[MODEL_MAX_LAYERS];
    BalanceOptions bo;
    int *h_sel[MODEL_MAX_LAYERS], *h_offs[MODEL_MAX_LAYERS];   // [Amax], [E+1]
    int sel_on_host;           // whether h_sel holds the last forward's (grouped experts copy it when asked)
    float *h_counts;           // [L*E]
    double *stats;             // [L, 2E + 3] the layers' stats, one buffer
    double *h_stats;           // [L, 2E + 3]
    float *h_logits, *h_rowloss, *h_mask;
    int *h_order;              // [2 Amax] route_sort's order and row
    int n_seg;                 // distinct tokens in the last forward with targets
    int *h_pos, *h_seg;        // [N], [N+1]
    float *h_coef;             // [L, 2E]
    float *h_gp;               // [L] the top-1 LBL's term common to all experts
    double balance_S[MODEL_MAX_LAYERS], balance_pbar[MODEL_MAX_LAYERS];
    // profile
    int prof;
    cudaEvent_t ev[2];
    double prof_ms[16];
};

enum { PH_EMBED, PH_NORM, PH_QKV, PH_ATTN, PH_OPROJ, PH_ROUTER, PH_SORT, PH_EXPERTS, PH_COMBINE, PH_HEAD, PH_LOSS, PH_OPT, PH_COUNT };
static const char *phase_name[PH_COUNT] = {"embedding", "rmsnorm", "qkv + qk-norm/rope", "attention", "o_proj",
                                           "router + balance", "sort", "experts", "gather/combine", "lm head",
                                           "cross-entropy", "adamw + norm"};
static int cur_phase = -1;
static void phase(GpuModel *g, int ph)
{
    if (!g->prof) return;
    if (cur_phase >= 0) {
        CUDA_CHECK(cudaEventRecord(g->ev[1]));
        CUDA_CHECK(cudaEventSynchronize(g->ev[1]));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, g->ev[0], g->ev[1]));
        g->prof_ms[cur_phase] += ms;
    }
    cur_phase = ph;
    if (ph >= 0) CUDA_CHECK(cudaEventRecord(g->ev[0]));
}

static void layer_offsets(GpuModel *g, const Config *c)
{
    size_t d = c->d_model, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, at = 0;
    g->embed = at; at += (size_t)c->vocab_size * d;
    for (int l = 0; l < c->n_layers; l++) {
        LayerOffsets *o = &g->lo[l];
        o->ln1 = at; at += d;
        o->wqkv = at; at += (qd + 2 * kvd) * d;   // q, k, v are consecutive: one product
        o->wo = at; at += d * qd;
        o->qnorm = at; at += hd;
        o->knorm = at; at += hd;
        o->ln2 = at; at += d;
        o->router = at; at += (size_t)c->n_experts * d;
        o->expert = at; at += (size_t)c->n_experts * 3 * c->d_expert * d;   // per expert gate | up (one [2de, d]) | down
    }
    g->norm = at; at += d;
    g->head = c->tie_embeddings ? g->embed : at;
    if (!c->tie_embeddings) at += (size_t)c->vocab_size * d;
    if (at != g->n_params) BUG("GPU parameter layout has %zu floats, the host's %zu", at, g->n_params);
}

// Carves every activation and scratch buffer out of one allocation (or
// only measures it when base is NULL), printing each kind's size.
static size_t carve(GpuModel *g, char *base, int print)
{
    const Config *c = &g->alloc;
    size_t N = (size_t)g->Bmax * g->Tmax, T = g->Tmax, B = g->Bmax, d = c->d_model, hd = c->head_dim, H = c->n_heads;
    size_t qd = H * hd, kvd = (size_t)c->n_kv_heads * hd, qkv = qd + 2 * kvd, E = c->n_experts, de = c->d_expert;
    size_t V = c->vocab_size, L = c->n_layers, amax = 0, off = 0, mark = 0;
    for (size_t l = 0; l < L; l++) amax = N * c->top_k[l] > amax ? N * c->top_k[l] : amax;
#define AT(ptr, type, n)                                   \
    do {                                                   \
        off = (off + 255) & ~(size_t)255;                  \
        if (base) ptr = (type *)(void *)(base + off);      \
        off += (n) * sizeof(type);                         \
    } while (0)
#define REPORT(what) do { if (print) info("gpu memory: %-40s %9.3f GiB", what, (off - mark) / 1073741824.0); mark = off; } while (0)
    for (size_t l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        AT(a->x, float, N * d); AT(a->ln1, bf16, N * d); AT(a->r1, float, N);
        AT(a->qkv, bf16, N * qkv); AT(a->qr, bf16, N * qd); AT(a->kr, bf16, N * kvd);
        AT(a->qrs, float, N * H); AT(a->krs, float, N * c->n_kv_heads); AT(a->att_lse, float, B * H * T);
        AT(a->ao, bf16, N * qd); AT(a->h, float, N * d); AT(a->ln2, bf16, N * d); AT(a->r2, float, N);
    }
    REPORT("attention activations (all layers)");
    for (size_t l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        size_t A = N * c->top_k[l];
        AT(a->z, float, N * E); AT(a->p, float, N * E); AT(a->q, float, N * E); AT(a->lse, float, N); AT(a->scal, float, N * 3);
        AT(a->sel, int, A); AT(a->order, int, A); AT(a->row, int, A);
        AT(a->offs, int, E + 1); AT(a->tiles, int, E + 1);
        AT(a->xe, bf16, A * d); AT(a->ye, bf16, A * d);
        if (!g->recompute) { AT(a->gu, bf16, A * 2 * de); AT(a->act, bf16, A * de); }
    }
    AT(g->stats, double, L * (2 * E + 3));   // one buffer, so one copy brings every layer's to the host
    for (size_t l = 0; l < L && base; l++) g->L[l].stats = g->stats + l * (2 * E + 3);
    if (g->recompute) {   // one pair for every layer: backward recomputes them
        bf16 *gu = NULL, *act = NULL;
        AT(gu, bf16, amax * 2 * de); AT(act, bf16, amax * de);
        for (size_t l = 0; l < L; l++) { g->L[l].gu = gu; g->L[l].act = act; }
    }
    REPORT(g->recompute ? "router and expert activations (recomputed)" : "router and expert activations");
    AT(g->x_final, float, N * d); AT(g->lnf, bf16, N * d); AT(g->rf, float, N);
    AT(g->logits, float, N * V); AT(g->lsef, float, N); AT(g->rowloss, float, N);
    AT(g->inputs, uint32_t, N); AT(g->targets, uint32_t, N); AT(g->mask, float, N);
    AT(g->cosv, float, T * hd / 2); AT(g->sinv, float, T * hd / 2); AT(g->bias, float, L * E); AT(g->coef, float, L * 2 * E);
    AT(g->emb_pos, int, N); AT(g->emb_seg, int, N + 1);
    AT(g->counts, float, L * E); AT(g->route_scratch, int, grouped_route_scratch((int)amax, (int)E));
    REPORT("head, logits and inputs");
    if (g->flash) { AT(g->S, float, N * H); }
    else { AT(g->S, float, B * H * T * T); AT(g->P, bf16, B * H * T * T); }
    if (!g->flash) { AT(g->dkh, float, B * H * T * hd); AT(g->dvh, float, B * H * T * hd); }
    REPORT(g->flash ? "attention scratch (fused kernels)" : "attention scratch (scores, recomputed in backward)");
    AT(g->dx, float, N * d); AT(g->dh, float, N * d); AT(g->du, float, N * d); AT(g->dln, float, N * d); AT(g->dh_bf, bf16, N * d);
    AT(g->dao, bf16, N * qd); AT(g->dqr, bf16, N * qd); AT(g->dkr, bf16, N * kvd); AT(g->dqkv, bf16, N * qkv);
    size_t ln_partial = cdiv(N, NORM_ROWS) * d, qk_partial = cdiv(N * H, NORM_ROWS) * hd;
    AT(g->dn, float, N * H * hd); AT(g->norm_partial, float, ln_partial > qk_partial ? ln_partial : qk_partial);
    AT(g->dz, bf16, N * E); AT(g->dpsel, float, amax); AT(g->dye, bf16, amax * d); AT(g->dgu, bf16, amax * 2 * de);
    AT(g->dact, float, amax * de); AT(g->dxe, float, amax * d); AT(g->dlogits, bf16, N * V);
    AT(g->norm_blocks, double, NORM_BLOCKS); AT(g->ptrs, void *, L * 10 * B * H);
    REPORT("gradient scratch");
#undef AT
#undef REPORT
    return off;
}

// ---------------------------------------------------------------- setup

// cos/sin [Tmax, hd/2] of the rotation, computed as the CPU's are so that
// both rotate alike.
static void upload_rope_tables(GpuModel *g)
{
    const Config *c = &g->alloc;
    int half = c->head_dim / 2, T = g->Tmax;
    float *cs = (float *)xmalloc((size_t)T * half * sizeof(float)), *sn = (float *)xmalloc((size_t)T * half * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            cs[(size_t)t * half + i] = (float)cos(ang);
            sn[(size_t)t * half + i] = (float)sin(ang);
        }
    CUDA_CHECK(cudaMemcpy(g->cosv, cs, (size_t)T * half * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(g->sinv, sn, (size_t)T * half * sizeof(float), cudaMemcpyHostToDevice));
    free(cs);
    free(sn);
}

extern "C" int gpu_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

extern "C" GpuModel *gpu_model_create(const Model *host, const Config *alloc, int B, int T, int recompute, int verbose)
{
    if (!gpu_count()) die("--device cuda: no CUDA device is visible");
    GpuModel *g = (GpuModel *)xcalloc(1, sizeof *g);
    g->alloc = *alloc;
    g->cfg = host->cfg;
    g->Bmax = B;
    g->Tmax = T;
    g->recompute = recompute;
    g->verbose = verbose;
    // SIGMA_ATTENTION=flash: the fused kernels (flash.cu), far lighter on
    // memory. Their first version (WMMA, scores through shared memory)
    // measured at half the speed of cuBLAS's products around a softmax
    // kernel on an H200 (bench/gpu.md); the present one keeps every operand
    // in registers but has not run on a GPU, so cuBLAS stays the default
    // until it is measured.
    const char *att = getenv("SIGMA_ATTENTION");
    g->flash = flash_supported(alloc->head_dim) && att && !strcmp(att, "flash");
    // SIGMA_EXPERTS=grouped: the device-side sort and grouped products
    // (grouped.cu), where the expert widths allow. Not yet the default: they
    // have not run on a GPU (see bench/gpu.md).
    const char *ex = getenv("SIGMA_EXPERTS");
    g->grouped = ex && !strcmp(ex, "grouped") && grouped_supported(alloc->d_model, 2 * alloc->d_expert) &&
                 grouped_supported(alloc->d_expert, alloc->d_model);
    g->tile_rows = grouped_tile_rows(B * T / alloc->n_experts);   // rows per expert at top-1
    g->n_params = host->n_params;
    g->n_tensors = host->n_tensors;
    g->tensors = (ParamTensor *)xmalloc((size_t)host->n_tensors * sizeof(ParamTensor));
    memcpy(g->tensors, host->tensors, (size_t)host->n_tensors * sizeof(ParamTensor));
    layer_offsets(g, alloc);
    if (!cublas) {
        CUBLAS_CHECK(cublasCreate(&cublas));
        for (int i = 0; i < EXPERT_STREAMS; i++) {
            CUDA_CHECK(cudaStreamCreate(&side_stream[i]));
            CUBLAS_CHECK(cublasCreate(&side[i]));
            CUBLAS_CHECK(cublasSetStream(side[i], side_stream[i]));
        }
        cur = cublas;
        const char *ns = getenv("SIGMA_EXPERT_STREAMS");
        if (ns && atoi(ns) >= 1 && atoi(ns) <= EXPERT_STREAMS) n_streams = atoi(ns);
    }
    live_models++;
    size_t P = g->n_params;
    if (verbose) {
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        info("gpu: %s (sm_%d%d), %.1f GiB", prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 master weights", P * 4 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "bf16 weights", P * 2 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 gradients", P * 4 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 AdamW moments", P * 8 / 1073741824.0);
    }
    CUDA_CHECK(cudaMalloc(&g->params, P * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&g->params_bf, P * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&g->grads, P * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&g->moments, 2 * P * sizeof(float)));
    CUDA_CHECK(cudaMemset(g->grads, 0, P * sizeof(float)));
    CUDA_CHECK(cudaMemset(g->moments, 0, 2 * P * sizeof(float)));
    g->acts_bytes = carve(g, NULL, verbose);
    CUDA_CHECK(cudaMalloc(&g->acts_base, g->acts_bytes));
    carve(g, g->acts_base, 0);
    if (verbose) info("gpu memory: %-40s %9.3f GiB", "total", gpu_model_bytes(g) / 1073741824.0);

    upload_rope_tables(g);
    const Config *c = alloc;
    size_t N = (size_t)B * T, E = c->n_experts;
    for (int l = 0; l < c->n_layers; l++) {
        g->h_sel[l] = (int *)xmalloc(N * c->top_k[l] * sizeof(int));
        g->h_offs[l] = (int *)xmalloc((E + 1) * sizeof(int));
    }
    g->h_counts = (float *)xcalloc((size_t)c->n_layers * E, sizeof(float));
    g->h_stats = (double *)xcalloc((size_t)c->n_layers * (2 * E + 3), sizeof(double));
    g->h_rowloss = (float *)xmalloc(N * sizeof(float));
    g->h_mask = (float *)xmalloc(N * sizeof(float));
    size_t amax = 0;
    for (int l = 0; l < c->n_layers; l++) amax = N * c->top_k[l] > amax ? N * c->top_k[l] : amax;
    g->h_order = (int *)xmalloc(2 * amax * sizeof(int));
    g->h_pos = (int *)xmalloc(N * sizeof(int));
    g->h_seg = (int *)xmalloc((N + 1) * sizeof(int));
    g->h_coef = (float *)xmalloc(c->n_layers * 2 * E * sizeof(float));
    g->h_gp = (float *)xmalloc(c->n_layers * sizeof(float));
    CUDA_CHECK(cudaEventCreate(&g->ev[0]));
    CUDA_CHECK(cudaEventCreate(&g->ev[1]));
    return g;
}

extern "C" size_t gpu_model_bytes(const GpuModel *g) { return g->n_params * (4 + 2 + 4 + 8) + g->acts_bytes; }

extern "C" void gpu_model_free(GpuModel *g)
{
    if (!g) return;
    CUDA_CHECK(cudaFree(g->params));
    CUDA_CHECK(cudaFree(g->params_bf));
    CUDA_CHECK(cudaFree(g->grads));
    CUDA_CHECK(cudaFree(g->moments));
    CUDA_CHECK(cudaFree(g->acts_base));
    for (int l = 0; l < g->alloc.n_layers; l++) { free(g->h_sel[l]); free(g->h_offs[l]); }
    free(g->h_counts);
    free(g->h_stats);
    free(g->h_rowloss);
    free(g->h_mask);
    free(g->h_logits);
    free(g->h_order);
    free(g->h_pos);
    free(g->h_seg);
    free(g->h_coef);
    free(g->h_gp);
    free(g->tensors);
    CUDA_CHECK(cudaEventDestroy(g->ev[0]));
    CUDA_CHECK(cudaEventDestroy(g->ev[1]));
    free(g);
    if (--live_models == 0 && cublas) {
        CUBLAS_CHECK(cublasDestroy(cublas));
        for (int i = 0; i < EXPERT_STREAMS; i++) {
            CUBLAS_CHECK(cublasDestroy(side[i]));
            CUDA_CHECK(cudaStreamDestroy(side_stream[i]));
        }
        cublas = cur = NULL;
    }
}

extern "C" void gpu_model_set_params(GpuModel *g, const float *params)
{
    CUDA_CHECK(cudaMemcpy(g->params, params, g->n_params * sizeof(float), cudaMemcpyHostToDevice));
    LAUNCH(to_bf16, 1024, 256, 0, 0, g->params_bf, g->params, (long)g->n_params);
    LAUNCHED();
}
extern "C" void gpu_model_get_params(GpuModel *g, float *params)
{
    CUDA_CHECK(cudaMemcpy(params, g->params, g->n_params * sizeof(float), cudaMemcpyDeviceToHost));
}
extern "C" void gpu_model_set_moments(GpuModel *g, const float *moments)
{
    CUDA_CHECK(cudaMemcpy(g->moments, moments, 2 * g->n_params * sizeof(float), cudaMemcpyHostToDevice));
}
extern "C" void gpu_model_get_moments(GpuModel *g, float *moments)
{
    CUDA_CHECK(cudaMemcpy(moments, g->moments, 2 * g->n_params * sizeof(float), cudaMemcpyDeviceToHost));
}
extern "C" void gpu_model_get_grads(GpuModel *g, float *grads)
{
    CUDA_CHECK(cudaMemcpy(grads, g->grads, g->n_params * sizeof(float), cudaMemcpyDeviceToHost));
}
extern "C" void gpu_model_set_grads(GpuModel *g, const float *grads)
{
    CUDA_CHECK(cudaMemcpy(g->grads, grads, g->n_params * sizeof(float), cudaMemcpyHostToDevice));
}
extern "C" void gpu_model_zero_grads(GpuModel *g) { CUDA_CHECK(cudaMemset(g->grads, 0, g->n_params * sizeof(float))); }

extern "C" void gpu_model_poison(GpuModel *g)
{
    CUDA_CHECK(cudaMemset(g->acts_base, 0xff, g->acts_bytes));   // NaN in fp32 and bf16, -1 in ints
    g->ptr_B = g->ptr_T = 0;                                      // the pointer arrays went with it
    upload_rope_tables(g);                                        // and the tables
}

// The attention products' pointer arrays for B x T, per layer, 10 kinds of
// B*H pointers: Q, K, V, S, P, O, dO, dQ, dKh, dVh (see attention_*).
enum { PQ, PK, PV, PS, PP, PO, PDO, PDQ, PDK, PDV, PKINDS };
static void attention_pointers(GpuModel *g, int B, int T)
{
    if (g->ptr_B == B && g->ptr_T == T) return;
    const Config *c = &g->alloc;
    int H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, group = H / KV;
    size_t BH = (size_t)B * H, per = (size_t)PKINDS * g->Bmax * H;
    void **hp = (void **)xmalloc((size_t)c->n_layers * per * sizeof(void *));
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *a = &g->L[l];
        void **k = hp + l * per;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)b * H + h, kh = h / group;
                k[PQ * BH + i] = a->qr + (size_t)b * T * qd + h * hd;
                k[PK * BH + i] = a->kr + (size_t)b * T * kvd + kh * hd;
                k[PV * BH + i] = a->qkv + (size_t)b * T * qkv + qd + kvd + kh * hd;
                k[PS * BH + i] = g->S + i * T * T;
                k[PP * BH + i] = g->P + i * T * T;
                k[PO * BH + i] = a->ao + (size_t)b * T * qd + h * hd;
                k[PDO * BH + i] = g->dao + (size_t)b * T * qd + h * hd;
                k[PDQ * BH + i] = g->dqr + (size_t)b * T * qd + h * hd;
                k[PDK * BH + i] = g->dkh + i * T * hd;
                k[PDV * BH + i] = g->dvh + i * T * hd;
            }
    }
    CUDA_CHECK(cudaMemcpy(g->ptrs, hp, (size_t)c->n_layers * per * sizeof(void *), cudaMemcpyHostToDevice));
    free(hp);
    g->ptr_B = B;
    g->ptr_T = T;
}
static void *const *ptrs(GpuModel *g, int l, int kind, int B)
{
    size_t BH = (size_t)B * g->alloc.n_heads, per = (size_t)PKINDS * g->Bmax * g->alloc.n_heads;
    return g->ptrs + l * per + kind * BH;
}

// ---------------------------------------------------------------- attention

// S[B*H, T, T] = scale Q K^T per (sequence, head), in forward and again in backward.
static void attention_scores(GpuModel *g, int l, int B, int T)
{
    const Config *c = &g->alloc;
    int H = c->n_heads, hd = c->head_dim, qd = H * hd, kvd = c->n_kv_heads * hd;
    gemm_batched(0, 1, T, T, hd, 1.0f / sqrtf((float)hd), (const void *const *)ptrs(g, l, PQ, B), qd,
                 (const void *const *)ptrs(g, l, PK, B), kvd, 0.0f, ptrs(g, l, PS, B), CUDA_R_32F, T, B * H);
}

// ao[N, qd] from qr, kr and v; att_lse[B*H*T] kept. S = scale Q K^T, P =
// causal softmax(S), O = P V, per (sequence, head), the KV head shared by
// its group.
static void attention_forward(GpuModel *g, int l, int B, int T)
{
    const Config *c = &g->alloc;
    int H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, BH = B * H;
    LayerActs *a = &g->L[l];
    if (g->flash) {
        flash_attention_forward(a->ao, a->att_lse, a->qr, a->kr, a->qkv + qd + kvd, qkv, B, T, H, KV, hd, 0);
        return;
    }
    attention_scores(g, l, B, T);
    LAUNCH(attention_softmax_forward, BH * T, 256, 0, 0, g->P, g->L[l].att_lse, g->S, T);
    LAUNCHED();
    gemm_batched(0, 0, T, hd, T, 1.0f, (const void *const *)ptrs(g, l, PP, B), T, (const void *const *)ptrs(g, l, PV, B), qkv,
                 0.0f, ptrs(g, l, PO, B), CUDA_R_16BF, qd, BH);
}

// dqr[N, qd], dkr[N, kvd] and the v part of dqkv from dao[N, qd].
static void attention_backward(GpuModel *g, int l, int B, int T)
{
    const Config *c = &g->alloc;
    int H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, BH = B * H;
    float scale = 1.0f / sqrtf((float)hd);
    LayerActs *a = &g->L[l];
    if (g->flash) {   // sums each group's dK and dV itself
        flash_attention_backward(g->dqr, g->dkr, g->dqkv + qd + kvd, g->S, g->dao, a->ao, a->qr, a->kr, a->qkv + qd + kvd, qkv,
                                 a->att_lse, B, T, H, KV, hd, 0);
        return;
    }
    attention_scores(g, l, B, T);
    LAUNCH(attention_probs, BH * T, 256, 0, 0, g->P, g->S, g->L[l].att_lse, T);
    LAUNCHED();
    // dV_h = P^T dO;  dP = dO V^T (over S);  dS = P (dP - rowsum) (over P)
    gemm_batched(1, 0, T, hd, T, 1.0f, (const void *const *)ptrs(g, l, PP, B), T, (const void *const *)ptrs(g, l, PDO, B), qd,
                 0.0f, ptrs(g, l, PDV, B), CUDA_R_32F, hd, BH);
    gemm_batched(0, 1, T, T, hd, 1.0f, (const void *const *)ptrs(g, l, PDO, B), qd, (const void *const *)ptrs(g, l, PV, B), qkv,
                 0.0f, ptrs(g, l, PS, B), CUDA_R_32F, T, BH);
    LAUNCH(attention_softmax_backward, BH * T, 256, 0, 0, g->P, g->S, T);
    LAUNCHED();
    // dQ = scale dS K;  dK_h = scale dS^T Q
    gemm_batched(0, 0, T, hd, T, scale, (const void *const *)ptrs(g, l, PP, B), T, (const void *const *)ptrs(g, l, PK, B), kvd,
                 0.0f, ptrs(g, l, PDQ, B), CUDA_R_16BF, qd, BH);
    gemm_batched(1, 0, T, hd, T, scale, (const void *const *)ptrs(g, l, PP, B), T, (const void *const *)ptrs(g, l, PQ, B), qd,
                 0.0f, ptrs(g, l, PDK, B), CUDA_R_32F, hd, BH);
    long n = (long)B * T * kvd;
    LAUNCH(group_sum, cdiv(n, 256), 256, 0, 0, g->dkr, kvd, g->dkh, B, T, H, KV, hd);
    LAUNCH(group_sum, cdiv(n, 256), 256, 0, 0, g->dqkv + qd + kvd, qkv, g->dvh, B, T, H, KV, hd);
    LAUNCHED();
}

// ---------------------------------------------------------------- norms' weight gradients

template <typename TX>
static void norm_weight_backward(GpuModel *g, float *dw, const float *grad, const TX *x, const float *rstd, int R, int C, int nh,
                                 int ldx)
{
    int chunks = cdiv(R, NORM_ROWS);
    LAUNCH(norm_weight_partial<TX>, cdiv((long)chunks * C, 256), 256, 0, 0, g->norm_partial, grad, x, rstd, R, C, nh, ldx);
    LAUNCH(norm_weight_finish, C, 256, 0, 0, dw, g->norm_partial, chunks, C);
    LAUNCHED();
}

// ---------------------------------------------------------------- MoE

// Elements from one expert's weights to the next: each is gate | up as one
// [2de, d], then down [d, de], from lo[l].expert on.
static long w_stride(const GpuModel *g) { return 3L * g->alloc.d_expert * g->alloc.d_model; }

// One product of every expert over its sorted rows of layer l, the weights
// w_e at offset `at` of expert e's (gate|up, or down), [n, k]: grouped
// kernels, or a cuBLAS product per expert over the streams.
//   forward:  out[rows, n] (bf16) = inp[rows, k] . w_e^T
//   backward: dinp[rows, k] (fp32) = dout[rows, n] . w_e;  dw_e += dout^T inp
static void experts_linear_forward(GpuModel *g, int l, bf16 *out, const bf16 *inp, size_t at, int k, int n)
{
    const LayerActs *a = &g->L[l];
    int E = g->alloc.n_experts, A = g->B * g->T * g->kused[l];
    const bf16 *w0 = g->params_bf + g->lo[l].expert + at;   // expert 0's weights
    if (g->grouped) {
        grouped_linear_forward(out, inp, w0, w_stride(g), a->offs, a->tiles, g->tile_rows, A, E, k, n, 0);
        return;
    }
    const int *offs = g->h_offs[l];
    for (int e = 0; e < E; e++) {
        int rows = offs[e + 1] - offs[e];
        on_expert_stream(e);
        if (rows)
            linear_forward(out + (size_t)offs[e] * n, CUDA_R_16BF, inp + (size_t)offs[e] * k, w0 + e * w_stride(g), rows, k, n, 0.0f);
    }
    on_main_stream();
}
static void experts_linear_backward(GpuModel *g, int l, float *dinp, const bf16 *dout, const bf16 *inp, size_t at, int k, int n)
{
    const LayerActs *a = &g->L[l];
    int E = g->alloc.n_experts, A = g->B * g->T * g->kused[l];
    size_t w0 = g->lo[l].expert + at;   // expert 0's weights in the buffers
    if (g->grouped) {
        grouped_linear_backward_input(dinp, dout, g->params_bf + w0, w_stride(g), a->offs, a->tiles, g->tile_rows, A, E, k, n, 0);
        grouped_linear_backward_weight(g->grads + w0, w_stride(g), dout, inp, a->offs, E, k, n, 0);
        return;
    }
    const int *offs = g->h_offs[l];
    for (int e = 0; e < E; e++) {
        int rows = offs[e + 1] - offs[e];
        if (!rows) continue;   // no token, no gradient
        size_t r0 = offs[e], w = w0 + (size_t)e * w_stride(g);
        on_expert_stream(e);
        linear_backward(dinp + r0 * k, 0.0f, g->grads + w, dout + r0 * n, inp + r0 * k, g->params_bf + w, rows, k, n);
    }
    on_main_stream();
}

// gu and act of layer l's sorted rows (the forward's, or recomputed).
static void experts_up(GpuModel *g, int l)
{
    int d = g->alloc.d_model, de = g->alloc.d_expert;
    LayerActs *a = &g->L[l];
    long A = (long)g->B * g->T * g->kused[l];
    experts_linear_forward(g, l, a->gu, a->xe, 0, d, 2 * de);
    if (A) LAUNCH(swiglu_forward, cdiv(A * de, 256), 256, 0, 0, a->act, a->gu, (int)A, de);
    LAUNCHED();
}

static void moe_forward(GpuModel *g, int l, int N, int k, const BalanceOptions *bo)
{
    const Config *c = &g->alloc;
    int d = c->d_model, de = c->d_expert, E = c->n_experts, A = N * k;
    LayerActs *a = &g->L[l];
    const LayerOffsets *o = &g->lo[l];
    phase(g, PH_ROUTER);
    linear_forward(a->z, CUDA_R_32F, a->ln2, g->params_bf + o->router, N, d, E, 0.0f);
    LAUNCH(router_forward, cdiv(N, 8), 256, 0, 0, a->p, a->lse, a->sel, bo->kind == BALANCE_TOP1_LBL ? a->q : NULL, a->scal, a->z,
                                        bo->use_bias ? g->bias + (size_t)l * E : NULL, N, E, k, bo->tau > 0 ? bo->tau : 1.0f);
    LAUNCHED();
    LAUNCH(column_sums, E, 256, 0, 0, a->stats, a->p, N, E);
    if (bo->kind == BALANCE_TOP1_LBL) LAUNCH(column_sums, E, 256, 0, 0, a->stats + E, a->q, N, E);
    LAUNCH(column_sums, 3, 256, 0, 0, a->stats + 2 * E, a->scal, N, 3);
    LAUNCHED();
    phase(g, PH_SORT);
    if (g->grouped) {
        grouped_route(a->order, a->row, a->offs, g->counts + (size_t)l * E, a->tiles, g->route_scratch, a->sel, A, E, g->tile_rows, 0);
    } else {
        CUDA_CHECK(cudaMemcpy(g->h_sel[l], a->sel, (size_t)A * sizeof(int), cudaMemcpyDeviceToHost));
        int *order = g->h_order, *row = order + A;
        route_sort(order, row, g->h_offs[l], g->h_counts + (size_t)l * E, g->h_sel[l], A, E);
        CUDA_CHECK(cudaMemcpy(a->order, order, (size_t)A * sizeof(int), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(a->row, row, (size_t)A * sizeof(int), cudaMemcpyHostToDevice));
    }
    phase(g, PH_COMBINE);
    LAUNCH(gather_rows, cdiv((long)A * d, 256), 256, 0, 0, a->xe, a->ln2, a->order, A, d, k);
    LAUNCHED();
    phase(g, PH_EXPERTS);
    experts_up(g, l);
    experts_linear_forward(g, l, a->ye, a->act, (size_t)2 * de * d, de, d);   // down
    phase(g, PH_COMBINE);
    float *out = l + 1 < c->n_layers ? g->L[l + 1].x : g->x_final;
    LAUNCH(combine_forward, cdiv((long)N * d, 256), 256, 0, 0, out, a->h, a->ye, a->p, a->sel, a->row, N, d, E, k);
    LAUNCHED();
}

// The standard LBL's f_e: expert e's share of layer l's assignments, over
// this micro-batch (counts[E]) or over the global batch the caller supplied.
static double lbl_fraction(const BalanceOptions *bo, const float *counts, int l, int e, int N, int k, int E)
{
    return bo->global_counts ? bo->global_counts[(size_t)l * E + e] / ((double)bo->global_tokens[l] * k) : counts[e] / ((double)N * k);
}

// The balance terms of layer l from its statistics (host), as model.c.
static void balance_losses(GpuModel *g, Losses *out, int l, int N, int k, const BalanceOptions *bo)
{
    int E = g->alloc.n_experts;
    const double *st = g->h_stats + (size_t)l * (2 * E + 3);
    const float *counts = g->h_counts + (size_t)l * E;
    if (bo->kind == BALANCE_LBL) {
        double sum = 0;
        for (int e = 0; e < E; e++) sum += lbl_fraction(bo, counts, l, e, N, k, E) * st[e] / N;
        out->balance += (float)(bo->coef * E * sum);
    } else if (bo->kind == BALANCE_TOP1_LBL) {
        double S = 0, pbar = st[2 * E] / N;
        for (int e = 0; e < E; e++) S += (st[E + e] / N) * (st[E + e] / N);
        g->balance_S[l] = S;
        g->balance_pbar[l] = pbar;
        out->balance += (float)(bo->coef * E * S / pbar);
    }
    if (bo->z_coef > 0) out->z += (float)(bo->z_coef * st[2 * E + 1] / N);
}

// The experts' backward, from dye[A, d] into dxe[A, d] and the expert
// weights' gradients. An expert without tokens gets no gradient.
static void experts_backward(GpuModel *g, int l)
{
    int d = g->alloc.d_model, de = g->alloc.d_expert, A = g->B * g->T * g->kused[l];
    const LayerActs *a = &g->L[l];
    experts_linear_backward(g, l, g->dact, g->dye, a->act, (size_t)2 * de * d, de, d);   // down
    if (A) LAUNCH(swiglu_backward, cdiv((long)A * de, 256), 256, 0, 0, g->dgu, g->dact, a->gu, A, de);
    LAUNCHED();
    experts_linear_backward(g, l, g->dxe, g->dgu, a->xe, 0, d, 2 * de);   // gate|up
}

// The balance terms' per-expert coefficients of every layer, as model.c's
// balance_backward, from the forward's statistics: one upload before the
// backward rather than a host round trip in each layer's.
static void upload_balance_coefficients(GpuModel *g, float scale)
{
    const Config *c = &g->alloc;
    const BalanceOptions *bo = &g->bo;
    int N = g->B * g->T, E = c->n_experts;
    int have_lbl = bo->kind == BALANCE_LBL, have_top1 = bo->kind == BALANCE_TOP1_LBL;
    memset(g->h_coef, 0, (size_t)c->n_layers * 2 * E * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const double *st = g->h_stats + (size_t)l * (2 * E + 3);
        const float *counts = g->h_counts + (size_t)l * E;
        float *hc = g->h_coef + (size_t)l * 2 * E;
        g->h_gp[l] = 0;
        if (have_lbl)
            for (int e = 0; e < E; e++) hc[e] = (float)(scale * bo->coef * E * lbl_fraction(bo, counts, l, e, N, g->kused[l], E) / N);
        if (have_top1) {
            double cc = scale * bo->coef * E, pbar = g->balance_pbar[l], S = g->balance_S[l];
            for (int e = 0; e < E; e++) hc[E + e] = (float)(cc * 2 * (st[E + e] / N) / pbar);
            g->h_gp[l] = (float)(-cc * S / (pbar * pbar) / N);
        }
    }
    if (have_lbl || have_top1)
        CUDA_CHECK(cudaMemcpy(g->coef, g->h_coef, (size_t)c->n_layers * 2 * E * sizeof(float), cudaMemcpyHostToDevice));
}

// From dout[N, d] (the layer output's gradient) into du[N, d] (of the
// normed input) and the expert and router gradients.
static void moe_backward(GpuModel *g, int l, const float *dout, float scale)
{
    const Config *c = &g->alloc;
    int N = g->B * g->T, d = c->d_model, E = c->n_experts, k = g->kused[l], A = N * k;
    LayerActs *a = &g->L[l];
    const LayerOffsets *o = &g->lo[l];
    const BalanceOptions *bo = &g->bo;
    phase(g, PH_COMBINE);
    LAUNCH(combine_backward, cdiv(A, 8), 256, 0, 0, g->dye, g->dpsel, dout, a->ye, a->p, a->sel, a->row, N, d, E, k);
    LAUNCHED();
    phase(g, PH_EXPERTS);
    if (g->recompute) experts_up(g, l);
    experts_backward(g, l);
    phase(g, PH_COMBINE);
    LAUNCH(scatter_rows, cdiv((long)N * d, 256), 256, 0, 0, g->du, g->dxe, a->row, N, d, k);
    LAUNCHED();
    phase(g, PH_ROUTER);
    int have_lbl = bo->kind == BALANCE_LBL, have_top1 = bo->kind == BALANCE_TOP1_LBL;
    const float *coef = g->coef + (size_t)l * 2 * E;
    float zc = bo->z_coef > 0 ? (float)(scale * bo->z_coef * 2.0 / N) : 0.0f;
    LAUNCH(router_backward, cdiv(N, 8), 256, 0, 0, g->dz, a->p, a->q, a->lse, a->sel, g->dpsel, have_lbl ? coef : NULL,
                                         have_top1 ? coef + E : NULL, g->h_gp[l], (bo->tau > 0 ? bo->tau : 1.0f) * N, zc, N, E, k);
    LAUNCHED();
    linear_backward(g->du, 1.0f, g->grads + o->router, g->dz, a->ln2, g->params_bf + o->router, N, d, E);
}

// ---------------------------------------------------------------- forward

// Positions sorted by token, for the embedding's backward: sorted and
// uploaded with the inputs rather than as a host round trip in the middle of
// the backward.
static void upload_token_order(GpuModel *g, const uint32_t *inputs, int N)
{
    g->n_seg = route_sort_tokens(g->h_pos, g->h_seg, inputs, N);
    CUDA_CHECK(cudaMemcpy(g->emb_pos, g->h_pos, (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(g->emb_seg, g->h_seg, ((size_t)g->n_seg + 1) * sizeof(int), cudaMemcpyHostToDevice));
}

extern "C" Losses gpu_model_forward(GpuModel *g, const Config *cfg, const uint32_t *inputs, const uint32_t *targets,
                                    const float *mask, int B, int T, const BalanceOptions *bo, const float *expert_bias,
                                    float *counts)
{
    const Config *c = &g->alloc;
    const int N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, E = c->n_experts, V = c->vocab_size, L = c->n_layers;
    if (N > g->Bmax * g->Tmax || T > g->Tmax || B > g->Bmax)
        BUG("forward of %d x %d tokens, the buffers hold %d x %d", B, T, g->Bmax, g->Tmax);
    static const BalanceOptions none = {BALANCE_NONE, 0, 0, 0, NULL, NULL, 0};
    if (!bo) bo = &none;
    for (int n = 0; n < N; n++) {
        if (inputs[n] >= (uint32_t)V) die("token %u at position %d is outside the model's vocabulary of %d", inputs[n], n, V);
        if (targets && targets[n] >= (uint32_t)V) die("target %u at position %d is outside the model's vocabulary of %d", targets[n], n, V);
    }
    g->cfg = *cfg;
    g->B = B;
    g->T = T;
    g->bo = *bo;   // its global counts stay valid until the backward, as on the CPU
    g->have_mask = mask != NULL;
    g->have_forward = 0;
    if (!g->flash) attention_pointers(g, B, T);
    phase(g, PH_EMBED);
    CUDA_CHECK(cudaMemcpy(g->inputs, inputs, (size_t)N * sizeof(uint32_t), cudaMemcpyHostToDevice));
    if (targets) {
        CUDA_CHECK(cudaMemcpy(g->targets, targets, (size_t)N * sizeof(uint32_t), cudaMemcpyHostToDevice));
        upload_token_order(g, inputs, N);
    }
    if (mask) CUDA_CHECK(cudaMemcpy(g->mask, mask, (size_t)N * sizeof(float), cudaMemcpyHostToDevice));
    if (bo->use_bias) CUDA_CHECK(cudaMemcpy(g->bias, expert_bias, (size_t)L * E * sizeof(float), cudaMemcpyHostToDevice));
    LAUNCH(embed_forward, cdiv((long)N * d, 256), 256, 0, 0, g->L[0].x, g->inputs, g->params + g->embed, N, d);
    LAUNCHED();
    Losses out = {0, 0, 0, 0};
    for (int l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        const LayerOffsets *o = &g->lo[l];
        int k = cfg->top_k[l];
        if (k > c->top_k[l]) BUG("layer %d at top-%d, the buffers hold top-%d", l, k, c->top_k[l]);
        g->kused[l] = k;
        phase(g, PH_NORM);
        LAUNCH(rmsnorm_forward, cdiv(N, 8), 256, 0, 0, a->ln1, a->r1, a->x, g->params + o->ln1, N, d, c->norm_eps);
        LAUNCHED();
        phase(g, PH_QKV);
        linear_forward(a->qkv, CUDA_R_16BF, a->ln1, g->params_bf + o->wqkv, N, d, qkv, 0.0f);
        LAUNCH(qknorm_rope_forward, cdiv(N * H, 8), 256, 0, 0, a->qr, a->qrs, a->qkv, qkv, g->params + o->qnorm, g->cosv, g->sinv, N, T, H,
                                                     hd, c->norm_eps);
        LAUNCH(qknorm_rope_forward, cdiv(N * KV, 8), 256, 0, 0, a->kr, a->krs, a->qkv + qd, qkv, g->params + o->knorm, g->cosv, g->sinv, N, T,
                                                      KV, hd, c->norm_eps);
        LAUNCHED();
        phase(g, PH_ATTN);
        attention_forward(g, l, B, T);
        phase(g, PH_OPROJ);
        CUDA_CHECK(cudaMemcpyAsync(a->h, a->x, (size_t)N * d * sizeof(float), cudaMemcpyDeviceToDevice));
        linear_forward(a->h, CUDA_R_32F, a->ao, g->params_bf + o->wo, N, qd, d, 1.0f);
        phase(g, PH_NORM);
        LAUNCH(rmsnorm_forward, cdiv(N, 8), 256, 0, 0, a->ln2, a->r2, a->h, g->params + o->ln2, N, d, c->norm_eps);
        LAUNCHED();
        moe_forward(g, l, N, k, bo);
    }
    phase(g, PH_NORM);
    LAUNCH(rmsnorm_forward, cdiv(N, 8), 256, 0, 0, g->lnf, g->rf, g->x_final, g->params + g->norm, N, d, c->norm_eps);
    LAUNCHED();
    phase(g, PH_HEAD);
    linear_forward(g->logits, CUDA_R_32F, g->lnf, g->params_bf + g->head, N, d, V, 0.0f);
    phase(g, PH_LOSS);
    if (targets) {
        LAUNCH(crossentropy_forward, N, 512, 0, 0, g->lsef, g->rowloss, g->logits, g->targets, mask ? g->mask : NULL, V);
        LAUNCHED();
        CUDA_CHECK(cudaMemcpy(g->h_rowloss, g->rowloss, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
        double loss = 0, msum = 0;
        for (int n = 0; n < N; n++) {
            loss += g->h_rowloss[n];
            msum += mask ? mask[n] : 1.0;
        }
        out.ce = msum > 0 ? (float)(loss / msum) : 0.0f;
        if (mask) memcpy(g->h_mask, mask, (size_t)N * sizeof(float));
    }
    g->have_forward = targets ? 2 : 1;
    g->sel_on_host = !g->grouped;
    if (g->grouped) CUDA_CHECK(cudaMemcpy(g->h_counts, g->counts, (size_t)L * E * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(g->h_stats, g->stats, (size_t)L * (2 * E + 3) * sizeof(double), cudaMemcpyDeviceToHost));
    for (int l = 0; l < L; l++) balance_losses(g, &out, l, N, g->kused[l], bo);
    if (counts) memcpy(counts, g->h_counts, (size_t)L * E * sizeof(float));
    phase(g, -1);
    out.loss = out.ce + out.balance + out.z;
    return out;
}

extern "C" const float *gpu_model_logits(GpuModel *g)
{
    size_t n = (size_t)g->B * g->T * g->alloc.vocab_size;
    if (!g->h_logits) g->h_logits = (float *)xmalloc((size_t)g->Bmax * g->Tmax * g->alloc.vocab_size * sizeof(float));
    CUDA_CHECK(cudaMemcpy(g->h_logits, g->logits, n * sizeof(float), cudaMemcpyDeviceToHost));
    return g->h_logits;
}

extern "C" const int *gpu_model_selection(GpuModel *g, int layer, int *k)
{
    *k = g->kused[layer];
    if (!g->sel_on_host) {   // the grouped experts sorted on the device: copied once, when asked
        for (int l = 0; l < g->alloc.n_layers; l++)
            CUDA_CHECK(cudaMemcpy(g->h_sel[l], g->L[l].sel, (size_t)g->B * g->T * g->kused[l] * sizeof(int), cudaMemcpyDeviceToHost));
        g->sel_on_host = 1;
    }
    return g->h_sel[layer];
}

// ---------------------------------------------------------------- backward

// The embedding's gradient: one block per distinct token sums its rows in
// position order, from the order upload_token_order left.
static void embedding_backward(GpuModel *g, const float *dx, int d)
{
    LAUNCH(embed_backward, g->n_seg, 256, 0, 0, g->grads + g->embed, dx, g->emb_pos, g->emb_seg, g->inputs, d);
    LAUNCHED();
}

extern "C" void gpu_model_backward(GpuModel *g, float scale)
{
    const Config *c = &g->alloc;
    if (g->have_forward != 2) BUG("gpu_model_backward without a forward with targets");
    const int B = g->B, T = g->T, N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, V = c->vocab_size;
    int have_mask = g->have_mask;
    phase(g, PH_LOSS);
    double msum = 0;
    for (int n = 0; n < N; n++) msum += have_mask ? g->h_mask[n] : 1.0;
    LAUNCH(crossentropy_backward, N, 512, 0, 0, g->dlogits, g->logits, g->lsef, g->targets, have_mask ? g->mask : NULL,
                                      msum > 0 ? (float)(scale / msum) : 0.0f, V);
    LAUNCHED();
    phase(g, PH_HEAD);
    linear_backward(g->dln, 0.0f, g->grads + g->head, g->dlogits, g->lnf, g->params_bf + g->head, N, d, V);
    phase(g, PH_NORM);
    LAUNCH(rmsnorm_backward, cdiv(N, 8), 256, 0, 0, g->dx, NULL, NULL, g->dln, g->x_final, g->params + g->norm, g->rf, N, d);
    LAUNCHED();
    norm_weight_backward<float>(g, g->grads + g->norm, g->dln, g->x_final, g->rf, N, d, 1, d);

    upload_balance_coefficients(g, scale);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        LayerActs *a = &g->L[l];
        const LayerOffsets *o = &g->lo[l];
        // x[l+1] = h + moe(rms(h))
        moe_backward(g, l, g->dx, scale);
        phase(g, PH_NORM);
        LAUNCH(rmsnorm_backward, cdiv(N, 8), 256, 0, 0, g->dh, g->dh_bf, g->dx, g->du, a->h, g->params + o->ln2, a->r2, N, d);
        LAUNCHED();
        norm_weight_backward<float>(g, g->grads + o->ln2, g->du, a->h, a->r2, N, d, 1, d);
        // h = x + Wo . attention
        phase(g, PH_OPROJ);
        gemm(0, 0, N, qd, d, 1.0f, g->dh_bf, d, g->params_bf + o->wo, qd, 0.0f, g->dao, CUDA_R_16BF, qd);
        gemm(1, 0, d, qd, N, 1.0f, g->dh_bf, d, a->ao, qd, 1.0f, g->grads + o->wo, CUDA_R_32F, qd);
        phase(g, PH_ATTN);
        attention_backward(g, l, B, T);
        phase(g, PH_QKV);
        LAUNCH(qknorm_rope_backward, cdiv(N * H, 8), 256, 0, 0, g->dqkv, qkv, g->dn, g->dqr, a->qkv, a->qrs, g->params + o->qnorm, g->cosv,
                                                      g->sinv, N, T, H, hd);
        LAUNCHED();
        norm_weight_backward<bf16>(g, g->grads + o->qnorm, g->dn, a->qkv, a->qrs, N * H, hd, H, qkv);
        LAUNCH(qknorm_rope_backward, cdiv(N * KV, 8), 256, 0, 0, g->dqkv + qd, qkv, g->dn, g->dkr, a->qkv + qd, a->krs, g->params + o->knorm,
                                                       g->cosv, g->sinv, N, T, KV, hd);
        LAUNCHED();
        norm_weight_backward<bf16>(g, g->grads + o->knorm, g->dn, a->qkv + qd, a->krs, N * KV, hd, KV, qkv);
        linear_backward(g->dln, 0.0f, g->grads + o->wqkv, g->dqkv, a->ln1, g->params_bf + o->wqkv, N, d, qkv);
        phase(g, PH_NORM);
        LAUNCH(rmsnorm_backward, cdiv(N, 8), 256, 0, 0, g->dx, NULL, g->dh, g->dln, a->x, g->params + o->ln1, a->r1, N, d);
        LAUNCHED();
        norm_weight_backward<float>(g, g->grads + o->ln1, g->dln, a->x, a->r1, N, d, 1, d);
    }
    phase(g, PH_EMBED);
    embedding_backward(g, g->dx, d);
    phase(g, -1);
}

// ---------------------------------------------------------------- optimizer

extern "C" double gpu_model_grad_norm(GpuModel *g)
{
    phase(g, PH_OPT);
    LAUNCH(sumsq_partial, NORM_BLOCKS, 256, 0, 0, g->norm_blocks, g->grads, (long)g->n_params);
    LAUNCHED();
    double part[NORM_BLOCKS], s = 0;
    CUDA_CHECK(cudaMemcpy(part, g->norm_blocks, sizeof part, cudaMemcpyDeviceToHost));
    for (int i = 0; i < NORM_BLOCKS; i++) s += part[i];
    phase(g, -1);
    return sqrt(s);
}

extern "C" void gpu_model_adamw(GpuModel *g, const AdamWStep *s)
{
    phase(g, PH_OPT);
    float c1 = 1.0f / (1.0f - powf(s->beta1, (float)s->t)), c2 = 1.0f / (1.0f - powf(s->beta2, (float)s->t));
    size_t P = g->n_params;
    // consecutive tensors of the same kind (decayed matrices, or not) in one launch
    for (int i = 0; i < g->n_tensors;) {
        int decay = g->tensors[i].ndim == 2, j = i;
        size_t lo = g->tensors[i].offset, hi = lo;
        while (j < g->n_tensors && (g->tensors[j].ndim == 2) == decay && g->tensors[j].offset == hi) hi += g->tensors[j++].numel;
        LAUNCH(adamw_kernel, cdiv((long)(hi - lo), 256 * 8) < 4096 ? cdiv((long)(hi - lo), 256 * 8) : 4096, 256, 0, 0,
            g->params + lo, g->params_bf + lo, g->moments + lo, g->moments + P + lo, g->grads + lo, (long)(hi - lo), s->lr,
            s->beta1, s->beta2, c1, c2, s->eps, decay ? s->weight_decay : 0.0f, s->grad_scale);
        LAUNCHED();
        i = j;
    }
    phase(g, -1);
}

// ---------------------------------------------------------------- statistics, profile

extern "C" void gpu_model_route_stats(const GpuModel *g, int layer, float *max_dev, float *min_dev, float *entropy)
{
    int E = g->alloc.n_experts, N = g->B * g->T, k = g->kused[layer];
    const float *c = g->h_counts + (size_t)layer * E;
    float hi = c[0], lo = c[0];
    for (int e = 1; e < E; e++) { hi = c[e] > hi ? c[e] : hi; lo = c[e] < lo ? c[e] : lo; }
    float mean = (float)N * k / E;
    *max_dev = mean > 0 ? (hi - mean) / mean : 0;
    *min_dev = mean > 0 ? (lo - mean) / mean : 0;
    *entropy = N ? (float)(g->h_stats[(size_t)layer * (2 * E + 3) + 2 * E + 2] / N) : 0;
}

extern "C" void gpu_model_profile(GpuModel *g, int on)
{
    g->prof = on;
    memset(g->prof_ms, 0, sizeof g->prof_ms);
    cur_phase = -1;
}

extern "C" void gpu_model_profile_print(GpuModel *g, FILE *f)
{
    double total = 0;
    for (int i = 0; i < PH_COUNT; i++) total += g->prof_ms[i];
    fprintf(f, "| phase | ms | share |\n| --- | ---: | ---: |\n");
    for (int i = 0; i < PH_COUNT; i++)
        fprintf(f, "| %s | %.2f | %.1f%% |\n", phase_name[i], g->prof_ms[i], total > 0 ? 100 * g->prof_ms[i] / total : 0.0);
    fprintf(f, "| total | %.2f | 100%% |\n", total);
}

extern "C" void gpu_profiler_range(int on) { CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop()); }

extern "C" double gpu_gemm_peak_tflops(int n)
{
    if (!cublas) BUG("gpu_gemm_peak_tflops before a model is created");
    bf16 *a, *b, *c;
    size_t sz = (size_t)n * n;
    CUDA_CHECK(cudaMalloc(&a, sz * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&b, sz * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&c, sz * sizeof(bf16)));
    float *tmp;
    CUDA_CHECK(cudaMalloc(&tmp, sz * sizeof(float)));
    CUDA_CHECK(cudaMemset(tmp, 0, sz * sizeof(float)));
    // random-looking data: zeros run faster than real numbers do
    float *h = (float *)xmalloc(sz * sizeof(float));
    uint64_t s = 1;
    for (size_t i = 0; i < sz; i++) h[i] = (float)((splitmix64(&s) >> 40) * 0x1.0p-24 - 0.5);
    CUDA_CHECK(cudaMemcpy(tmp, h, sz * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    LAUNCH(to_bf16, 1024, 256, 0, 0, a, tmp, (long)sz);
    LAUNCH(to_bf16, 1024, 256, 0, 0, b, tmp, (long)sz);
    LAUNCHED();
    for (int i = 0; i < 3; i++) gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, CUDA_R_16BF, n);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    const int reps = 10;
    CUDA_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < reps; i++) gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, CUDA_R_16BF, n);
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(c));
    CUDA_CHECK(cudaFree(tmp));
    return 2.0 * n * (double)n * n * reps / (ms * 1e-3) / 1e12;
}
