// Causal grouped-query attention, fused in the manner of FlashAttention-2:
// the T x T scores never reach memory, not even shared memory. A block of
// 4 warps takes 64 query rows (or 64 key rows) of one (sequence, head); each
// warp owns 16 of them and keeps its operands, scores, probabilities and
// accumulators in registers as mma.sync fragments (bf16 in, fp32
// accumulate), walking the other side in tiles of 64 staged through shared
// memory. The probabilities go from the scores' accumulator fragments
// straight into the next product's operand fragments (the two layouts
// coincide), and the online softmax reduces a row across the 4 lanes that
// hold it. Forward keeps only each row's log-sum-exp. Backward is two
// kernels, one over key tiles (dK, dV, summed over the query heads that
// share the KV head inside the block) and one over query tiles (dQ), so no
// two blocks add into one element: deterministic, no atomics. Head sizes
// 16, 32, 64, 96 and 128 (flash_supported); see flash.h.
//
// Grids are (sequence x head, tile), the tiles numbered so that the blocks
// with the most work (queries late in the sequence, keys early) start first
// on every head: the causal imbalance then fills in at the end, not as a
// tail of long blocks.
//
// Packed rows (pos, flash.h): a query sees only the keys of its own
// document, from its first, row - pos[row], to itself; the others' scores
// are -inf before the softmax and their probabilities 0 in the backward.
// A document's first key never decreases along a row, so the key tiles
// before the first key of a query tile's first row, and the query tiles
// from the first whose first row's document begins after a key tile, are
// skipped whole. Without pos every first key is 0: the same work and bits
// as plain causal attention.
//
// Fragment coordinates (lane = 4 g + t): an accumulator c[4] of a 16 x 8
// tile holds rows g (c[0], c[1]) and g + 8 (c[2], c[3]) at columns 2t, 2t + 1.
#include "cuda/flash.h"

#include "cuda/common.cuh"
#include "cuda/ptx.cuh"

#include <math.h>
#include <string.h>

#define TILE 64
#define WARPS 4
#define PAD 8   // shared rows padded by 16 bytes: ldmatrix's 8 rows hit 8 different bank groups

struct Heads {
    int T, H, KV, ldv;
    float scale;
    const int *pos;   // [B*T] positions in packed rows, or NULL
};

// The first key query row `row` of a sequence may see: its document's
// first (pos_b: the sequence's positions, or NULL), 0 past T or without pos.
__device__ static inline int first_key(const int *pos_b, int row, int T) { return pos_b && row < T ? row - pos_b[row] : 0; }

// dst[TILE, HD + PAD] (shared) = rows r0 .. r0+TILE of src (row stride ld), zero past T; asynchronous.
// A warp's 32 pieces are 32 / CB rows by CB consecutive pieces, each 8-lane
// phase of the store one piece of 8 consecutive rows: with the odd row pitch
// (HD + PAD) / 8 those land on 8 different bank groups, where a row's
// consecutive pieces would wrap onto the next row's (HD = 32, 96). The
// warp still reads whole 32-byte sectors.
template <int HD> __device__ static inline void stage_rows(bf16 *dst, const bf16 *src, int ld, int r0, int T)
{
    const int per_row = HD / 8, CB = per_row < 4 ? per_row : 4, RG = 32 / CB, blocks = per_row / CB;
    const int groups = TILE * per_row / 32;   // of 32 pieces, one per warp at a time
    static_assert(per_row % CB == 0 && TILE % RG == 0 && groups % WARPS == 0, "a tile in whole groups of rows and pieces");
    const int l = threadIdx.x % 32, lr = l % RG, lc = l / RG * 8;
#pragma unroll
    for (int j = 0; j < groups / WARPS; j++) {
        int grp = threadIdx.x / 32 + j * WARPS, r = grp / blocks * RG + lr, c = grp % blocks * CB * 8 + lc;
        bool valid = r0 + r < T;
        cp_async16(dst + r * (HD + PAD) + c, valid ? src + (size_t)(r0 + r) * ld + c : src, valid);
    }
}
__device__ static inline void staged(void)
{
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
}

// A fragments of this warp's 16 rows of a staged tile: f[HD / 16][4].
template <int HD> __device__ static inline void rows_as_a(uint32_t f[][4], const bf16 *tile, int w, int lane)
{
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) ldmatrix_x4<false>(f[kk], tile + (w * 16 + lane % 16) * (HD + PAD) + kk * 16 + lane / 16 * 8);
}

// acc[TILE / 8][4] += a (16 x HD, fragments) . tile^T, tile [TILE, HD] staged:
// each of the tile's rows is a column of the product.
template <int HD> __device__ static inline void times_tile_t(float acc[][4], const uint32_t a[][4], const bf16 *tile, int lane)
{
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
        for (int nj = 0; nj < TILE / 16; nj++)
            mma_pair<false>(acc[2 * nj], acc[2 * nj + 1], a[kk],
                            tile + (nj * 16 + lane % 8 + lane / 16 * 8) * (HD + PAD) + kk * 16 + lane / 8 % 2 * 8);
}

// acc[HD / 8][4] += p (16 x TILE, fragments) . tile, tile [TILE, HD] staged.
template <int HD> __device__ static inline void times_tile(float acc[][4], const uint32_t p[][4], const bf16 *tile, int lane)
{
#pragma unroll
    for (int kk = 0; kk < TILE / 16; kk++)
#pragma unroll
        for (int dj = 0; dj < HD / 16; dj++)
            mma_pair<true>(acc[2 * dj], acc[2 * dj + 1], p[kk],
                           tile + (kk * 16 + lane % 8 + lane / 8 % 2 * 8) * (HD + PAD) + dj * 16 + lane / 16 * 8);
}

__device__ static inline uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}
// The accumulators of a 16 x TILE product as the A fragments of the next
// product (16 x TILE by TILE x n): k step kk takes n8 tiles 2kk and 2kk + 1.
__device__ static inline void acc_as_a(uint32_t a[][4], const float s[][4])
{
#pragma unroll
    for (int kk = 0; kk < TILE / 16; kk++) {
        a[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        a[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        a[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

// The sum and the maximum of a row over the 4 lanes (a quad) that hold it.
__device__ static inline float quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ static inline float quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

template <int HD> static constexpr int tiles_bytes(int n) { return n * TILE * (HD + PAD) * (int)sizeof(bf16); }

// ---------------------------------------------------------------- forward

template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_forward_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                                                   const bf16 *v, Heads s)
{
    DYNAMIC_SMEM(unsigned char, smem);
    const int ts = TILE * (HD + PAD);   // a staged tile's elements
    bf16 *Qs = (bf16 *)smem, *Ks = Qs + ts, *Vs = Ks + 2 * ts;   // [TILE, HD + PAD]: Q, then two buffers each of K and V
    const int qb = gridDim.y - 1 - blockIdx.y;   // the longest rows (most key tiles) first
    const int bh = blockIdx.x, b = bh / s.H, h = bh % s.H, kh = h / (s.H / s.KV);
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q0 = qb * TILE, row0 = q0 + w * 16 + g;   // this lane's rows: row0, row0 + 8
    const bf16 *qh = q + (size_t)b * s.T * qd + h * HD, *kh_ = k + (size_t)b * s.T * kvd + kh * HD;
    const bf16 *vh = v + (size_t)b * s.T * s.ldv + kh * HD;
    const int *pos_b = s.pos ? s.pos + (size_t)b * s.T : NULL;
    const int first[2] = {first_key(pos_b, row0, s.T), first_key(pos_b, row0 + 8, s.T)};   // this lane's rows' first keys
    const int kb0 = first_key(pos_b, q0, s.T) / TILE;   // the key tiles before it are no row's here
    stage_rows<HD>(Qs, qh, qd, q0, s.T);
    stage_rows<HD>(Ks + kb0 % 2 * ts, kh_, kvd, kb0 * TILE, s.T);
    stage_rows<HD>(Vs + kb0 % 2 * ts, vh, s.ldv, kb0 * TILE, s.T);
    staged();
    uint32_t qf[HD / 16][4];
    rows_as_a<HD>(qf, Qs, w, lane);
    float o[HD / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int kb = kb0; kb <= qb; kb++) {
        const int k0 = kb * TILE, buf = kb % 2;
        if (kb < qb) {   // the next tiles load while these are used; their buffers were released at the end of kb - 1
            stage_rows<HD>(Ks + (1 - buf) * ts, kh_, kvd, k0 + TILE, s.T);
            stage_rows<HD>(Vs + (1 - buf) * ts, vh, s.ldv, k0 + TILE, s.T);
        }
        cp_async_commit();
        cp_async_wait<1>();   // all but the newest group: tiles kb have landed
        __syncthreads();
        const bf16 *Kt = Ks + buf * ts, *Vt = Vs + buf * ts;
        float sc[TILE / 8][4] = {};
        times_tile_t<HD>(sc, qf, Kt, lane);   // S = Q K^T
        // online softmax of rows row0 (h = 0) and row0 + 8 (h = 1) over their keys [first, row]. Key k0 <= every row
        // here, so without pos the maxima are finite; in packed rows a row may have no key yet (its document begins
        // in a later tile): its maximum stays -inf, and its exponentials are taken from 0 so that they are 0, not NaN
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int row = row0 + 8 * hh;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < TILE / 8; j++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int key = k0 + j * 8 + 2 * t + c;
                    float x = first[hh] <= key && key <= row ? sc[j][2 * hh + c] * s.scale : -INFINITY;
                    sc[j][2 * hh + c] = x;
                    mx = fmaxf(mx, x);
                }
            const float m_new = fmaxf(m[hh], quad_max(mx)), m_exp = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = __expf(m[hh] - m_exp);
            float sum = 0;
#pragma unroll
            for (int j = 0; j < TILE / 8; j++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    float p = __expf(sc[j][2 * hh + c] - m_exp);
                    sc[j][2 * hh + c] = p;
                    sum += p;
                }
            l[hh] = l[hh] * alpha + quad_sum(sum);
            m[hh] = m_new;
#pragma unroll
            for (int j = 0; j < HD / 8; j++) {
                o[j][2 * hh] *= alpha;
                o[j][2 * hh + 1] *= alpha;
            }
        }
        uint32_t pf[TILE / 16][4];
        acc_as_a(pf, sc);
        times_tile<HD>(o, pf, Vt, lane);   // O += P V
        __syncthreads();   // every warp is done with buffer buf before it is refilled
    }
    cp_async_wait<0>();   // (the last group is empty)
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = row0 + 8 * hh;
        if (row >= s.T) continue;
        bf16 *dst = out + ((size_t)b * s.T + row) * qd + h * HD + 2 * t;
#pragma unroll
        for (int j = 0; j < HD / 8; j++)
            *(__nv_bfloat162 *)(dst + j * 8) = __floats2bfloat162_rn(o[j][2 * hh] / l[hh], o[j][2 * hh + 1] / l[hh]);
        if (t == 0) lse[(size_t)bh * s.T + row] = m[hh] + logf(l[hh]);
    }
}

// ---------------------------------------------------------------- backward

// D[n, h] = dO . O of each row (the softmax backward's row term).
__global__ void flash_rowdot(float *D, const bf16 *dout, const bf16 *out, int N, int H, int hd)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * H) return;
    int n = r / H, h = r % H;
    const bf16 *a = dout + (size_t)n * H * hd + h * hd, *o = out + (size_t)n * H * hd + h * hd;
    float s = 0;
    for (int i = lane; i < hd; i += 32) s += __bfloat162float(a[i]) * __bfloat162float(o[i]);
    s = warp_sum(s);
    if (lane == 0) D[r] = s;
}

// One block per 64 keys of one KV head: over each query head of its group
// and that head's query tiles from the diagonal on (in packed rows, up to
// the last that holds a query of these keys' documents),
//   S^T = K Q^T, P^T = exp(scale S^T - lse), dV += P^T dO,
//   dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += scale dS^T Q.
// The group's sum stays in registers: dK and dV are written once, in bf16.
template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_dkdv_kernel(bf16 *dk, bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v,
                                                                const bf16 *dout, const float *lse, const float *D, Heads s)
{
    DYNAMIC_SMEM(unsigned char, smem);
    const int ts = TILE * (HD + PAD);
    bf16 *Ks = (bf16 *)smem, *Vs = Ks + ts, *Qs = Vs + ts, *dOs = Qs + 2 * ts;   // K, V, two buffers each of Q and dO
    float *ls = (float *)(dOs + 2 * ts), *Ds = ls + 2 * TILE;   // [2][TILE] each: the query rows' lse and D
    int *fs = (int *)(Ds + 2 * TILE);                           // [2][TILE]: and their first keys
    const int kb = blockIdx.y, bk = blockIdx.x, b = bk / s.KV, kh = bk % s.KV, group = s.H / s.KV;   // the longest first
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int k0 = kb * TILE, key0 = k0 + w * 16 + g;   // this lane's keys: key0, key0 + 8
    const int *pos_b = s.pos ? s.pos + (size_t)b * s.T : NULL;
    int span = (s.T + TILE - 1) / TILE - kb;   // query tiles from the diagonal on
    if (pos_b)   // but none from the first whose first row's document begins after these keys
        for (int i = 1; i < span; i++)
            if (first_key(pos_b, k0 + i * TILE, s.T) >= k0 + TILE) { span = i; break; }
    const int steps = group * span;   // (query head, query tile) pairs
    stage_rows<HD>(Ks, k + (size_t)b * s.T * kvd + kh * HD, kvd, k0, s.T);
    stage_rows<HD>(Vs, v + (size_t)b * s.T * s.ldv + kh * HD, s.ldv, k0, s.T);
    // the group's first query head; step i takes head h0 + i / span
    const size_t h0 = (size_t)kh * group;
    const bf16 *qg = q + (size_t)b * s.T * qd + h0 * HD, *dog = dout + (size_t)b * s.T * qd + h0 * HD;
    const float *lseg = lse + ((size_t)b * s.H + h0) * s.T, *Dg = D + (size_t)b * s.T * s.H + h0;
    // step i's query rows, their lse and D, into buffer `to`
    auto stage_queries = [&](int to, int i) {
        const int j = i / span, q0 = k0 + i % span * TILE;
        stage_rows<HD>(Qs + to * ts, qg + j * HD, qd, q0, s.T);
        stage_rows<HD>(dOs + to * ts, dog + j * HD, qd, q0, s.T);
        for (int r = threadIdx.x; r < TILE; r += blockDim.x) {
            int qi = q0 + r;
            ls[to * TILE + r] = qi < s.T ? lseg[(size_t)j * s.T + qi] : 0.0f;
            Ds[to * TILE + r] = qi < s.T ? Dg[(size_t)qi * s.H + j] : 0.0f;
            fs[to * TILE + r] = first_key(pos_b, qi, s.T);
        }
    };
    stage_queries(0, 0);
    staged();
    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    for (int i = 0; i < steps; i++) {
        const int q0 = k0 + i % span * TILE, buf = i % 2;
        if (i + 1 < steps) stage_queries(1 - buf, i + 1);   // the next tiles load while these are used
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *Qt = Qs + buf * ts, *dOt = dOs + buf * ts;
        const float *lt = ls + buf * TILE, *Dt = Ds + buf * TILE;
        const int *ft = fs + buf * TILE;
        float st[TILE / 8][4] = {}, dpt[TILE / 8][4] = {};
        {   // the warp's keys and values as A fragments, reloaded each time: fewer live registers
            uint32_t f[HD / 16][4];
            rows_as_a<HD>(f, Ks, w, lane);
            times_tile_t<HD>(st, f, Qt, lane);    // S^T
            rows_as_a<HD>(f, Vs, w, lane);
            times_tile_t<HD>(dpt, f, dOt, lane);  // dP^T
        }
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int c = j * 8 + 2 * t + e % 2, qi = q0 + c, key = key0 + 8 * (e / 2);
                float p = ft[c] <= key && key <= qi && qi < s.T ? __expf(st[j][e] * s.scale - lt[c]) : 0.0f;
                st[j][e] = p;
                dpt[j][e] = p * (dpt[j][e] - Dt[c]);   // dS^T
            }
        uint32_t pf[TILE / 16][4], dsf[TILE / 16][4];
        acc_as_a(pf, st);
        acc_as_a(dsf, dpt);
        times_tile<HD>(dva, pf, dOt, lane);   // dV += P^T dO
        times_tile<HD>(dka, dsf, Qt, lane);   // dK += dS^T Q
        __syncthreads();   // every warp is done with buffer buf before it is refilled
    }
    cp_async_wait<0>();
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int key = key0 + 8 * hh;
        if (key >= s.T) continue;
        bf16 *dkr = dk + ((size_t)b * s.T + key) * kvd + kh * HD + 2 * t, *dvr = dv + ((size_t)b * s.T + key) * s.ldv + kh * HD + 2 * t;
#pragma unroll
        for (int j = 0; j < HD / 8; j++) {
            *(__nv_bfloat162 *)(dkr + j * 8) = __floats2bfloat162_rn(dka[j][2 * hh] * s.scale, dka[j][2 * hh + 1] * s.scale);
            *(__nv_bfloat162 *)(dvr + j * 8) = __floats2bfloat162_rn(dva[j][2 * hh], dva[j][2 * hh + 1]);
        }
    }
}

// One block per 64 queries: over the key tiles up to the diagonal (in
// packed rows, from the first that holds a key of these queries' documents),
//   S = Q K^T, P = exp(scale S - lse), dP = dO V^T, dS = P (dP - D), dQ += scale dS K.
template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_dq_kernel(bf16 *dq, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                                                              const float *lse, const float *D, Heads s)
{
    DYNAMIC_SMEM(unsigned char, smem);
    const int ts = TILE * (HD + PAD);
    bf16 *Qs = (bf16 *)smem, *dOs = Qs + ts, *Ks = dOs + ts, *Vs = Ks + 2 * ts;   // Q, dO, two buffers each of K and V
    const int qb = gridDim.y - 1 - blockIdx.y;   // the longest rows (most key tiles) first
    const int bh = blockIdx.x, b = bh / s.H, h = bh % s.H, kh = h / (s.H / s.KV);
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q0 = qb * TILE, row0 = q0 + w * 16 + g;
    const bf16 *kh_ = k + (size_t)b * s.T * kvd + kh * HD, *vh = v + (size_t)b * s.T * s.ldv + kh * HD;
    const int *pos_b = s.pos ? s.pos + (size_t)b * s.T : NULL;
    const int first[2] = {first_key(pos_b, row0, s.T), first_key(pos_b, row0 + 8, s.T)};   // this lane's rows' first keys
    const int kb0 = first_key(pos_b, q0, s.T) / TILE;   // the key tiles before it are no row's here
    stage_rows<HD>(Qs, q + (size_t)b * s.T * qd + h * HD, qd, q0, s.T);
    stage_rows<HD>(dOs, dout + (size_t)b * s.T * qd + h * HD, qd, q0, s.T);
    stage_rows<HD>(Ks + kb0 % 2 * ts, kh_, kvd, kb0 * TILE, s.T);
    stage_rows<HD>(Vs + kb0 % 2 * ts, vh, s.ldv, kb0 * TILE, s.T);
    staged();
    float lr[2], dr[2];   // lse and D of this lane's rows
    for (int hh = 0; hh < 2; hh++) {
        int row = row0 + 8 * hh;
        lr[hh] = row < s.T ? lse[(size_t)bh * s.T + row] : 0.0f;
        dr[hh] = row < s.T ? D[((size_t)b * s.T + row) * s.H + h] : 0.0f;
    }
    float acc[HD / 8][4] = {};
    for (int kb = kb0; kb <= qb; kb++) {
        const int k0 = kb * TILE, buf = kb % 2;
        if (kb < qb) {   // the next tiles load while these are used
            stage_rows<HD>(Ks + (1 - buf) * ts, kh_, kvd, k0 + TILE, s.T);
            stage_rows<HD>(Vs + (1 - buf) * ts, vh, s.ldv, k0 + TILE, s.T);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *Kt = Ks + buf * ts, *Vt = Vs + buf * ts;
        float sc[TILE / 8][4] = {}, dp[TILE / 8][4] = {};
        {
            uint32_t f[HD / 16][4];
            rows_as_a<HD>(f, Qs, w, lane);
            times_tile_t<HD>(sc, f, Kt, lane);   // S
            rows_as_a<HD>(f, dOs, w, lane);
            times_tile_t<HD>(dp, f, Vt, lane);   // dP
        }
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int key = k0 + j * 8 + 2 * t + i % 2, hh = i / 2, row = row0 + 8 * hh;
                float p = first[hh] <= key && key <= row && row < s.T ? __expf(sc[j][i] * s.scale - lr[hh]) : 0.0f;
                dp[j][i] = p * (dp[j][i] - dr[hh]);   // dS
            }
        uint32_t dsf[TILE / 16][4];
        acc_as_a(dsf, dp);
        times_tile<HD>(acc, dsf, Kt, lane);   // dQ += dS K
        __syncthreads();   // every warp is done with buffer buf before it is refilled
    }
    cp_async_wait<0>();
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = row0 + 8 * hh;
        if (row >= s.T) continue;
        bf16 *dst = dq + ((size_t)b * s.T + row) * qd + h * HD + 2 * t;
#pragma unroll
        for (int j = 0; j < HD / 8; j++)
            *(__nv_bfloat162 *)(dst + j * 8) = __floats2bfloat162_rn(acc[j][2 * hh] * s.scale, acc[j][2 * hh + 1] * s.scale);
    }
}

// ---------------------------------------------------------------- launches

template <class K> static void allow_smem(K kernel, int bytes, int *ready)
{
    if (*ready) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    *ready = 1;
}

template <int HD>
static void forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, Heads s, cudaStream_t stream)
{
    static int ready;
    auto kernel = flash_forward_kernel<HD>;
    const int bytes = tiles_bytes<HD>(5);
    allow_smem(kernel, bytes, &ready);
    dim3 grid(B * s.H, (s.T + TILE - 1) / TILE);
    LAUNCH(kernel, grid, WARPS * 32, bytes, stream, out, lse, q, k, v, s);
    LAUNCHED();
}

template <int HD>
static void backward(bf16 *dq, bf16 *dk, bf16 *dv, float *D, const bf16 *dout, const bf16 *out, const bf16 *q, const bf16 *k,
                     const bf16 *v, const float *lse, int B, Heads s, cudaStream_t stream)
{
    static int ready_kv, ready_q;
    auto dkdv = flash_dkdv_kernel<HD>;
    auto dqk = flash_dq_kernel<HD>;
    const int bytes_kv = tiles_bytes<HD>(6) + 4 * TILE * (int)sizeof(float) + 2 * TILE * (int)sizeof(int), bytes_q = tiles_bytes<HD>(6);
    allow_smem(dkdv, bytes_kv, &ready_kv);
    allow_smem(dqk, bytes_q, &ready_q);
    int N = B * s.T;
    LAUNCH(flash_rowdot, (N * s.H + 7) / 8, 256, 0, stream, D, dout, out, N, s.H, HD);
    const int tiles = (s.T + TILE - 1) / TILE;
    LAUNCH(dkdv, dim3(B * s.KV, tiles), WARPS * 32, bytes_kv, stream, dk, dv, q, k, v, dout, lse, D, s);
    LAUNCH(dqk, dim3(B * s.H, tiles), WARPS * 32, bytes_q, stream, dq, q, k, v, dout, lse, D, s);
    LAUNCHED();
}

extern "C" int flash_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 96 || hd == 128; }

#define DISPATCH(hd, call)                                    \
    switch (hd) {                                             \
    case 16: { const int HDV = 16; call; } break;             \
    case 32: { const int HDV = 32; call; } break;             \
    case 64: { const int HDV = 64; call; } break;             \
    case 96: { const int HDV = 96; call; } break;             \
    case 128: { const int HDV = 128; call; } break;           \
    default: BUG("flash attention for head size %d", hd);    \
    }

extern "C" void flash_attention_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int ldv, const int *pos,
                                        int B, int T, int H, int KV, int hd, cudaStream_t stream)
{
    Heads s = {T, H, KV, ldv, 1.0f / sqrtf((float)hd), pos};
    DISPATCH(hd, forward<HDV>(out, lse, q, k, v, B, s, stream));
}

extern "C" void flash_attention_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *D, const bf16 *dout, const bf16 *out, const bf16 *q,
                                         const bf16 *k, const bf16 *v, int ldv, const float *lse, const int *pos, int B, int T, int H,
                                         int KV, int hd, cudaStream_t stream)
{
    Heads s = {T, H, KV, ldv, 1.0f / sqrtf((float)hd), pos};
    DISPATCH(hd, backward<HDV>(dq, dk, dv, D, dout, out, q, k, v, lse, B, s, stream));
}
