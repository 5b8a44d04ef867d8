// Attention against a key-value cache (model/kvcache.h), for inference: a
// step's new keys and values appended to their rows of the cache, then each
// new token's query heads against its row's cached keys and values up to
// itself, as model.c's attention_cached_forward. The cache is bf16,
// [rows, KV heads, max_len, head_dim] per layer: a query head reads its
// group's KV head (grouped-query attention).
//
// A decode step has one new token a row: its attention reads the row's
// whole cache once per query head (the group's heads re-read it from L2),
// which, with the active weights, is what a step costs (bandwidth-bound).
#ifndef SIGMA_CUDA_KVATTENTION_CUH
#define SIGMA_CUDA_KVATTENTION_CUH

#include "cuda/common.cuh"

enum { KVATT_WARPS = 4, KVATT_MAX_HD = 256 };

// ---------------------------------------------------------------- kernels

// kc, vc [rows, KV, max_len, hd] at (rows[t], pos[t]) = k[t] (contiguous
// [n, KV*hd]) and v[t] (row stride ldv).
static __global__ void kv_append_kernel(bf16 *kc, bf16 *vc, const bf16 *k, const bf16 *v, int ldv, const int *rows, const int *pos,
                                        int n, int KV, int hd, int max_len)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)n * KV * hd) return;
    int t = (int)(i / ((long)KV * hd)), kh = (int)(i / hd % KV), c = (int)(i % hd);
    long at = (((long)rows[t] * KV + kh) * max_len + pos[t]) * hd + c;
    kc[at] = k[i];
    vc[at] = v[(long)t * ldv + (long)kh * hd + c];
}

// One block per (new token, query head), KVATT_WARPS warps: each warp takes
// every KVATT_WARPS-th key, a lane a slice of head_dim, with a running
// softmax (max, sum, and the weighted sum of values); then warp 0 merges the
// warps' partial results. Deterministic: a fixed split and order.
static __global__ void attention_cached_kernel(bf16 *out, const bf16 *q, const bf16 *kc, const bf16 *vc, const int *rows,
                                               const int *pos, int H, int KV, int hd, int max_len, float scale)
{
    __shared__ float part_m[KVATT_WARPS], part_l[KVATT_WARPS], part_o[KVATT_WARPS][KVATT_MAX_HD];
    const int per = KVATT_MAX_HD / 32;
    int t = blockIdx.x / H, h = blockIdx.x % H, w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const bf16 *qt = q + ((long)t * H + h) * hd;
    long base = ((long)rows[t] * KV + h / (H / KV)) * max_len * hd;
    const bf16 *kb = kc + base, *vb = vc + base;
    float qv[per], acc[per];
    for (int i = 0; i < per; i++) {
        int c = lane + 32 * i;
        qv[i] = c < hd ? to_f(qt[c]) : 0.0f;
        acc[i] = 0;
    }
    float m = -INFINITY, l = 0;
    for (int j = w; j <= pos[t]; j += KVATT_WARPS) {
        const bf16 *kj = kb + (long)j * hd, *vj = vb + (long)j * hd;
        float s = 0;
        for (int i = 0; i < per; i++) {
            int c = lane + 32 * i;
            if (c < hd) s += qv[i] * to_f(kj[c]);
        }
        s = warp_sum(s) * scale;
        float mn = fmaxf(m, s), corr = expf(m - mn), pj = expf(s - mn);
        l = l * corr + pj;
        for (int i = 0; i < per; i++) {
            int c = lane + 32 * i;
            if (c < hd) acc[i] = acc[i] * corr + pj * to_f(vj[c]);
        }
        m = mn;
    }
    if (lane == 0) {
        part_m[w] = m;
        part_l[w] = l;
    }
    for (int i = 0; i < per; i++) {
        int c = lane + 32 * i;
        if (c < hd) part_o[w][c] = acc[i];
    }
    __syncthreads();
    if (w != 0) return;
    float M = part_m[0], L = 0;   // warp 0 always has key 0
    for (int i = 1; i < KVATT_WARPS; i++) M = fmaxf(M, part_m[i]);
    for (int i = 0; i < KVATT_WARPS; i++) L += part_l[i] * expf(part_m[i] - M);   // a warp without keys: m = -inf, weight 0
    for (int c = lane; c < hd; c += 32) {
        float o = 0;
        for (int i = 0; i < KVATT_WARPS; i++) o += part_o[i][c] * expf(part_m[i] - M);
        out[((long)t * H + h) * hd + c] = __float2bfloat16(o / L);
    }
}

// ---------------------------------------------------------------- launchers

// The step's keys k[n, KV*hd] (normed and rotated, contiguous) and values
// v (row stride ldv) into the cache kc, vc [rows, KV, max_len, hd] at each
// token's row rows[n] and position pos[n] (device arrays).
static void kv_append(bf16 *kc, bf16 *vc, const bf16 *k, const bf16 *v, int ldv, const int *rows, const int *pos, int n, int KV, int hd,
                      int max_len, GpuCtx ctx)
{
    LAUNCH(kv_append_kernel, cdiv((long)n * KV * hd, 256), 256, 0, ctx.stream, kc, vc, k, v, ldv, rows, pos, n, KV, hd, max_len);
    LAUNCHED();
}

// out[n, H*hd] (bf16) = each new token's attention: q[n, H*hd] (normed and
// rotated) against positions 0 .. pos[t] of row rows[t] of kc, vc (its own
// key and value appended first). hd at most KVATT_MAX_HD.
static void attention_cached_forward(bf16 *out, const bf16 *q, const bf16 *kc, const bf16 *vc, const int *rows, const int *pos, int n,
                                     int H, int KV, int hd, int max_len, GpuCtx ctx)
{
    if (hd > KVATT_MAX_HD) die("the key-value cache's attention takes head_dim up to %d, not %d", KVATT_MAX_HD, hd);
    LAUNCH(attention_cached_kernel, n * H, 32 * KVATT_WARPS, 0, ctx.stream, out, q, kc, vc, rows, pos, H, KV, hd, max_len,
           1.0f / sqrtf((float)hd));
    LAUNCHED();
}

#endif
