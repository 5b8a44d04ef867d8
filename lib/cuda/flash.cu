// Causal grouped-query attention, fused in the manner of FlashAttention-2:
// the T x T scores never reach device memory. Each block takes 64 query
// rows (or 64 key rows) of one (sequence, head), 4 warps of 16 rows, and
// walks the other side in tiles of 64 through shared memory; the products
// run on the tensor cores (WMMA, bf16 in, fp32 accumulate), the softmax
// online in fp32. Forward keeps only each row's log-sum-exp. Backward is
// two kernels, one over key tiles (dK, dV) and one over query tiles (dQ),
// so that no two blocks add into one element: deterministic, no atomics.
// Head sizes that are multiples of 16 up to 128; see flash.h.
#include "cuda/flash.h"

#include "cuda/common.cuh"

#include <mma.h>

using namespace nvcuda;

#define TILE 64
#define WARPS 4

// dst[TILE, HD] (shared) = rows r0 .. r0+TILE of src (row stride ld), zero past T.
template <int HD> __device__ static void load_tile(bf16 *dst, const bf16 *src, int ld, int r0, int T)
{
    const int per_row = HD / 8;   // 16-byte vectors
    for (int i = threadIdx.x; i < TILE * per_row; i += blockDim.x) {
        int r = i / per_row, c = (i % per_row) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) v = *(const uint4 *)(src + (size_t)(r0 + r) * ld + c);
        *(uint4 *)(dst + r * HD + c) = v;
    }
}
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// out[16, TILE] (fp32, ld TILE) = a[16, HD] . b[TILE, HD]^T, a and b row-major
template <int HD> __device__ static void mm_abt(float *out, const bf16 *a, const bf16 *b)
{
    for (int j = 0; j < TILE / 16; j++) {
        FragC c;
        wmma::fill_fragment(c, 0.0f);
        for (int kk = 0; kk < HD / 16; kk++) {
            FragA fa;
            FragBt fb;
            wmma::load_matrix_sync(fa, a + kk * 16, HD);
            wmma::load_matrix_sync(fb, b + j * 16 * HD + kk * 16, HD);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(out + j * 16, c, TILE, wmma::mem_row_major);
    }
}
// acc[16, HD] (fp32, ld HD) += a[16, TILE] (ld TILE) . b[TILE, HD], row-major
template <int HD> __device__ static void mm_acc(float *acc, const bf16 *a, const bf16 *b)
{
    for (int j = 0; j < HD / 16; j++) {
        FragC c;
        wmma::load_matrix_sync(c, acc + j * 16, HD, wmma::mem_row_major);
        for (int kk = 0; kk < TILE / 16; kk++) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, a + kk * 16, TILE);
            wmma::load_matrix_sync(fb, b + kk * 16 * HD + j * 16, HD);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(acc + j * 16, c, HD, wmma::mem_row_major);
    }
}

// Where each (sequence, head)'s rows start: q, out and dq [N, H*hd]; k
// [N, KV*hd]; v with row stride ldv.
struct Heads {
    int T, H, KV, ldv;
    float scale;
};

template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_forward_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                                                   const bf16 *v, Heads s)
{
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem, *Ks = Qs + TILE * HD, *Vs = Ks + TILE * HD, *Ps = Vs + TILE * HD;   // [TILE, HD] x3, [TILE, TILE]
    float *Ss = (float *)(Ps + TILE * TILE), *Os = Ss + TILE * TILE;                             // [TILE, TILE], [TILE, HD]
    float *rm = Os + TILE * HD, *rl = rm + TILE, *ra = rl + TILE;                                // [TILE] max, sum, rescale
    const int qb = blockIdx.x, bh = blockIdx.y, b = bh / s.H, h = bh % s.H, kh = h / (s.H / s.KV);
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, q0 = qb * TILE;
    const bf16 *qh = q + (size_t)b * s.T * qd + h * HD, *kh_ = k + (size_t)b * s.T * kvd + kh * HD;
    const bf16 *vh = v + (size_t)b * s.T * s.ldv + kh * HD;
    load_tile<HD>(Qs, qh, qd, q0, s.T);
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) Os[i] = 0.0f;
    for (int i = threadIdx.x; i < TILE; i += blockDim.x) { rm[i] = -INFINITY; rl[i] = 0.0f; }
    for (int kb = 0; kb <= qb; kb++) {
        const int k0 = kb * TILE;
        __syncthreads();   // the previous tiles are no longer read
        load_tile<HD>(Ks, kh_, kvd, k0, s.T);
        load_tile<HD>(Vs, vh, s.ldv, k0, s.T);
        __syncthreads();
        mm_abt<HD>(Ss + w * 16 * TILE, Qs + w * 16 * HD, Ks);
        __syncwarp();
        for (int r = w * 16; r < w * 16 + 16; r++) {   // online softmax, a row at a time, 2 columns a lane
            const int qi = q0 + r;
            float s0 = k0 + lane <= qi ? Ss[r * TILE + lane] * s.scale : -INFINITY;
            float s1 = k0 + lane + 32 <= qi ? Ss[r * TILE + lane + 32] * s.scale : -INFINITY;
            float m_old = rm[r], m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));   // finite: key k0 <= qi
            float p0 = __expf(s0 - m_new), p1 = __expf(s1 - m_new), alpha = __expf(m_old - m_new);
            float sum = warp_sum(p0 + p1);
            Ps[r * TILE + lane] = __float2bfloat16(p0);
            Ps[r * TILE + lane + 32] = __float2bfloat16(p1);
            __syncwarp();
            if (lane == 0) { rm[r] = m_new; rl[r] = rl[r] * alpha + sum; ra[r] = alpha; }
        }
        __syncwarp();
        for (int i = lane; i < 16 * HD; i += 32) Os[w * 16 * HD + i] *= ra[w * 16 + i / HD];
        __syncwarp();
        mm_acc<HD>(Os + w * 16 * HD, Ps + w * 16 * TILE, Vs);
    }
    __syncwarp();
    for (int i = lane; i < 16 * HD; i += 32) {
        int r = w * 16 + i / HD, c = i % HD;
        if (q0 + r < s.T) out[((size_t)b * s.T + q0 + r) * qd + h * HD + c] = __float2bfloat16(Os[r * HD + c] / rl[r]);
    }
    if (lane < 16 && q0 + w * 16 + lane < s.T) lse[(size_t)bh * s.T + q0 + w * 16 + lane] = rm[w * 16 + lane] + logf(rl[w * 16 + lane]);
}

// D[B*H*T] = rowsum(dO * O) per (sequence, head, position): one warp each.
__global__ void flash_rowdot(float *D, const bf16 *dout, const bf16 *out, int N, int H, int hd)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= N * H) return;
    int n = r / H, h = r % H;
    const bf16 *a = dout + (size_t)n * H * hd + h * hd, *o = out + (size_t)n * H * hd + h * hd;
    float s = 0;
    for (int i = lane; i < hd; i += 32) s += __bfloat162float(a[i]) * __bfloat162float(o[i]);
    s = warp_sum(s);
    if (lane == 0) D[r] = s;   // indexed [n, h]; the kernels read it as such
}

// dK_h, dV_h [B*H, T, HD] (fp32, per query head; the caller sums each
// group) for one tile of 64 keys, over the query tiles at and after it.
template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_dkdv_kernel(float *dkh, float *dvh, const bf16 *q, const bf16 *k, const bf16 *v,
                                                                const bf16 *dout, const float *lse, const float *D, Heads s)
{
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Ks = (bf16 *)smem, *Vs = Ks + TILE * HD, *Qs = Vs + TILE * HD, *dOs = Qs + TILE * HD, *Ps = dOs + TILE * HD;
    float *Ss = (float *)(Ps + TILE * TILE), *dKs = Ss + TILE * TILE, *dVs = dKs + TILE * HD, *ls = dVs + TILE * HD, *Ds = ls + TILE;
    const int kb = blockIdx.x, bh = blockIdx.y, b = bh / s.H, h = bh % s.H, kh = h / (s.H / s.KV);
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, k0 = kb * TILE;
    const int nq = (s.T + TILE - 1) / TILE;
    const bf16 *qh = q + (size_t)b * s.T * qd + h * HD, *doh = dout + (size_t)b * s.T * qd + h * HD;
    load_tile<HD>(Ks, k + (size_t)b * s.T * kvd + kh * HD, kvd, k0, s.T);
    load_tile<HD>(Vs, v + (size_t)b * s.T * s.ldv + kh * HD, s.ldv, k0, s.T);
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) dKs[i] = dVs[i] = 0.0f;
    for (int qb = kb; qb < nq; qb++) {
        const int q0 = qb * TILE;
        __syncthreads();
        load_tile<HD>(Qs, qh, qd, q0, s.T);
        load_tile<HD>(dOs, doh, qd, q0, s.T);
        for (int i = threadIdx.x; i < TILE; i += blockDim.x) {   // lse and D of these query rows
            int qi = q0 + i;
            ls[i] = qi < s.T ? lse[(size_t)bh * s.T + qi] : 0.0f;
            Ds[i] = qi < s.T ? D[((size_t)b * s.T + qi) * s.H + h] : 0.0f;
        }
        __syncthreads();
        float *St = Ss + w * 16 * TILE;   // this warp's 16 keys x 64 queries
        bf16 *Pt = Ps + w * 16 * TILE;
        mm_abt<HD>(St, Ks + w * 16 * HD, Qs);   // S^T = K Q^T
        __syncwarp();
        for (int i = lane; i < 16 * TILE; i += 32) {
            int r = i / TILE, c = i % TILE, kj = k0 + w * 16 + r, qi = q0 + c;
            Pt[i] = __float2bfloat16(kj <= qi && qi < s.T ? __expf(St[i] * s.scale - ls[c]) : 0.0f);
        }
        __syncwarp();
        mm_acc<HD>(dVs + w * 16 * HD, Pt, dOs);   // dV += P^T dO
        mm_abt<HD>(St, Vs + w * 16 * HD, dOs);    // dP^T = V dO^T
        __syncwarp();
        for (int i = lane; i < 16 * TILE; i += 32) Pt[i] = __float2bfloat16(__bfloat162float(Pt[i]) * (St[i] - Ds[i % TILE]));
        __syncwarp();
        mm_acc<HD>(dKs + w * 16 * HD, Pt, Qs);    // dK += dS^T Q (scale below)
    }
    __syncwarp();
    for (int i = lane; i < 16 * HD; i += 32) {
        int r = w * 16 + i / HD, c = i % HD;
        if (k0 + r < s.T) {
            size_t at = ((size_t)bh * s.T + k0 + r) * HD + c;
            dkh[at] = dKs[r * HD + c] * s.scale;
            dvh[at] = dVs[r * HD + c];
        }
    }
}

// dQ [N, H*HD] (bf16) for one tile of 64 queries, over the key tiles up to it.
template <int HD>
__global__ void __launch_bounds__(WARPS * 32) flash_dq_kernel(bf16 *dq, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                                                              const float *lse, const float *D, Heads s)
{
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem, *dOs = Qs + TILE * HD, *Ks = dOs + TILE * HD, *Vs = Ks + TILE * HD, *Ps = Vs + TILE * HD;
    float *Ss = (float *)(Ps + TILE * TILE), *dQs = Ss + TILE * TILE, *ls = dQs + TILE * HD, *Ds = ls + TILE;
    const int qb = blockIdx.x, bh = blockIdx.y, b = bh / s.H, h = bh % s.H, kh = h / (s.H / s.KV);
    const int qd = s.H * HD, kvd = s.KV * HD, w = threadIdx.x / 32, lane = threadIdx.x % 32, q0 = qb * TILE;
    load_tile<HD>(Qs, q + (size_t)b * s.T * qd + h * HD, qd, q0, s.T);
    load_tile<HD>(dOs, dout + (size_t)b * s.T * qd + h * HD, qd, q0, s.T);
    for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
        int qi = q0 + i;
        ls[i] = qi < s.T ? lse[(size_t)bh * s.T + qi] : 0.0f;
        Ds[i] = qi < s.T ? D[((size_t)b * s.T + qi) * s.H + h] : 0.0f;
    }
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) dQs[i] = 0.0f;
    for (int kb = 0; kb <= qb; kb++) {
        const int k0 = kb * TILE;
        __syncthreads();
        load_tile<HD>(Ks, k + (size_t)b * s.T * kvd + kh * HD, kvd, k0, s.T);
        load_tile<HD>(Vs, v + (size_t)b * s.T * s.ldv + kh * HD, s.ldv, k0, s.T);
        __syncthreads();
        float *Sw = Ss + w * 16 * TILE;
        bf16 *Pw = Ps + w * 16 * TILE;
        mm_abt<HD>(Sw, Qs + w * 16 * HD, Ks);   // S = Q K^T
        __syncwarp();
        for (int i = lane; i < 16 * TILE; i += 32) {
            int r = w * 16 + i / TILE, c = i % TILE, qi = q0 + r;
            Pw[i] = __float2bfloat16(k0 + c <= qi && qi < s.T ? __expf(Sw[i] * s.scale - ls[r]) : 0.0f);
        }
        __syncwarp();
        mm_abt<HD>(Sw, dOs + w * 16 * HD, Vs);  // dP = dO V^T
        __syncwarp();
        for (int i = lane; i < 16 * TILE; i += 32) Pw[i] = __float2bfloat16(__bfloat162float(Pw[i]) * (Sw[i] - Ds[w * 16 + i / TILE]));
        __syncwarp();
        mm_acc<HD>(dQs + w * 16 * HD, Pw, Ks);   // dQ += dS K (scale below)
    }
    __syncwarp();
    for (int i = lane; i < 16 * HD; i += 32) {
        int r = w * 16 + i / HD, c = i % HD;
        if (q0 + r < s.T) dq[((size_t)b * s.T + q0 + r) * qd + h * HD + c] = __float2bfloat16(dQs[r * HD + c] * s.scale);
    }
}

template <int HD> static size_t smem_forward() { return (3 * TILE * HD + TILE * TILE) * 2 + (TILE * TILE + TILE * HD + 3 * TILE) * 4; }
template <int HD> static size_t smem_dkdv() { return (4 * TILE * HD + TILE * TILE) * 2 + (TILE * TILE + 2 * TILE * HD + 2 * TILE) * 4; }
template <int HD> static size_t smem_dq() { return (4 * TILE * HD + TILE * TILE) * 2 + (TILE * TILE + TILE * HD + 2 * TILE) * 4; }

template <int HD> static void forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, Heads s)
{
    static int ready;
    if (!ready) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_forward<HD>()));
        ready = 1;
    }
    dim3 grid((s.T + TILE - 1) / TILE, B * s.H);
    flash_forward_kernel<HD><<<grid, WARPS * 32, smem_forward<HD>()>>>(out, lse, q, k, v, s);
    LAUNCHED();
}

template <int HD>
static void backward(bf16 *dq, float *dkh, float *dvh, float *D, const bf16 *dout, const bf16 *out, const bf16 *q, const bf16 *k,
                     const bf16 *v, const float *lse, int B, Heads s)
{
    static int ready;
    if (!ready) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_dkdv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_dkdv<HD>()));
        CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_dq<HD>()));
        ready = 1;
    }
    int N = B * s.T;
    flash_rowdot<<<(N * s.H + 7) / 8, 256>>>(D, dout, out, N, s.H, HD);
    dim3 grid((s.T + TILE - 1) / TILE, B * s.H);
    flash_dkdv_kernel<HD><<<grid, WARPS * 32, smem_dkdv<HD>()>>>(dkh, dvh, q, k, v, dout, lse, D, s);
    flash_dq_kernel<HD><<<grid, WARPS * 32, smem_dq<HD>()>>>(dq, q, k, v, dout, lse, D, s);
    LAUNCHED();
}

extern "C" int flash_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 96 || hd == 128; }

#define DISPATCH(hd, call)                       \
    switch (hd) {                                \
    case 16: { const int HDV = 16; call; } break;   \
    case 32: { const int HDV = 32; call; } break;   \
    case 64: { const int HDV = 64; call; } break;   \
    case 96: { const int HDV = 96; call; } break;   \
    case 128: { const int HDV = 128; call; } break; \
    default: BUG("flash attention for head size %d", hd); \
    }

extern "C" void flash_attention_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int ldv, int B, int T,
                                        int H, int KV, int hd)
{
    Heads s = {T, H, KV, ldv, 1.0f / sqrtf((float)hd)};
    DISPATCH(hd, forward<HDV>(out, lse, q, k, v, B, s));
}

extern "C" void flash_attention_backward(bf16 *dq, float *dkh, float *dvh, float *D, const bf16 *dout, const bf16 *out, const bf16 *q,
                                         const bf16 *k, const bf16 *v, int ldv, const float *lse, int B, int T, int H, int KV, int hd)
{
    Heads s = {T, H, KV, ldv, 1.0f / sqrtf((float)hd)};
    DISPATCH(hd, backward<HDV>(dq, dkh, dvh, D, dout, out, q, k, v, lse, B, s));
}
