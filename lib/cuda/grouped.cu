// Grouped expert products and the device-side sort behind them: see
// grouped.cuh. The index logic is route_plan.h's, unit-tested on the host.
#include "cuda/grouped.cuh"

#include "cuda/ptx.cuh"
#include "cuda/route_plan.h"

#include <stdint.h>

// ---------------------------------------------------------------- the sort

// hist[C, E]: each chunk's count of every expert.
__global__ void route_histogram(int *hist, const int *sel, int A, int E)
{
    DYNAMIC_SMEM(int, count);   // [E]
    for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
    __syncthreads();
    int i0 = blockIdx.x * ROUTE_CHUNK, i1 = min(A, i0 + ROUTE_CHUNK);
    for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        int e = sel[i];
        if ((unsigned)e >= (unsigned)E) __trap();   // the router wrote no such expert: fail loudly
        atomicAdd(&count[e], 1);                    // integers: the same sums in any order
    }
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) hist[(long)blockIdx.x * E + e] = count[e];
}

// One block: base[C, E] (each chunk's first row for each expert), offs,
// counts and tiles from hist.
__global__ void route_bases(int *base, int *offs, float *counts, int *tiles, const int *hist, int C, int E, int bm)
{
    DYNAMIC_SMEM(int, total);   // [E]
    for (int e = threadIdx.x; e < E; e += blockDim.x) total[e] = route_column_bases(base, hist, e, C, E);
    __syncthreads();
    if (threadIdx.x == 0) route_offsets(offs, counts, tiles, total, E, bm);
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x)
        for (int c = 0; c < C; c++) base[(long)c * E + e] += offs[e];
}

// One block of ROUTE_CHUNK threads per chunk: each assignment's sorted row.
__global__ void route_place(int *order, int *row, const int *base, const int *sel, int A, int E)
{
    __shared__ int s[ROUTE_CHUNK];
    int i0 = blockIdx.x * ROUTE_CHUNK, t = threadIdx.x, n = min(ROUTE_CHUNK, A - i0);
    if (t < n) s[t] = sel[i0 + t];
    __syncthreads();
    if (t >= n) return;
    int r = base[(long)blockIdx.x * E + s[t]] + route_rank_in_chunk(s, t);
    order[r] = i0 + t;
    row[i0 + t] = r;
}

size_t grouped_route_scratch(int A, int E) { return 2 * (size_t)cdiv(A, ROUTE_CHUNK) * E; }

void grouped_route(int *order, int *row, int *offs, float *counts, int *tiles, int *scratch, const int *sel, int A, int E, int bm,
                   cudaStream_t stream)
{
    int C = cdiv(A, ROUTE_CHUNK);
    int *hist = scratch, *base = scratch + (size_t)C * E;
    size_t smem = (size_t)E * sizeof(int);
    if (C) LAUNCH(route_histogram, C, 256, smem, stream, hist, sel, A, E);
    LAUNCH(route_bases, 1, 256, smem, stream, base, offs, counts, tiles, hist, C, E, bm);
    if (C) LAUNCH(route_place, C, ROUTE_CHUNK, 0, stream, order, row, base, sel, A, E);
    LAUNCHED();
}

// ---------------------------------------------------------------- the product

// A tile is BM x BN (BM 128, or 64 where experts get few rows each), summed
// over k in steps of BK.
#define BN 128
#define BK 32
#define STAGES 3
#define THREADS 256   // 8 warps: 2 over rows (BM / 2 each) by 4 over columns (32 each)
#define PAD 8         // shared rows padded by 16 bytes: ldmatrix's 8 rows hit 8 different bank groups

// Where the operands sit: A(m, k) at A[m * lda + k] (ROW) or A[k * lda + m]
// (COL); B(k, n) at B[n * ldb + k] (NK) or B[k * ldb + n] (KN).
enum { A_ROW, A_COL };
enum { B_NK, B_KN };
// What varies by group: the rows of A and C (each group its own B), or
// the k of the sum (each group its own C).
enum { GROUP_ROWS, GROUP_K };

typedef struct {
    const bf16 *A, *B;
    void *C;
    int lda, ldb, ldc;
    long b_stride, c_stride;   // elements from one group's B (GROUP_ROWS) or C (GROUP_K) to the next
    const int *offs, *tiles;   // [E+1] each
    int M, N, K, E;            // GROUP_ROWS: K is fixed; GROUP_K: M is
    int accumulate;            // fp32 C only: C += rather than C =
} Problem;

// Shared elements of one stage's tile of A or B with R rows (m or n), by
// layout: R k-contiguous rows of BK, or BK rows holding R contiguous m (or n).
template <int KCONTIG, int R> __host__ __device__ constexpr int tile_elems() { return KCONTIG ? R * (BK + PAD) : BK * (R + PAD); }

// Stage an R x BK tile of an operand whose rows along `outer` are rows
// [o0, o_end) and whose k are [k0, k_end): KCONTIG when k is the contiguous
// axis. Out of range reads as zero.
template <int KCONTIG, int R>
__device__ static inline void load_tile(bf16 *dst, const bf16 *src, int ld, int o0, int o_end, int k0, int k_end)
{
    static_assert(!KCONTIG || (BK == 32 && R % 8 == 0), "k-contiguous tiles staged as 8 rows of 4 chunks per warp");
    #pragma unroll
    for (int c = threadIdx.x; c < R * BK / 8; c += THREADS) {
        int o, k;   // the chunk's first element
        bf16 *d;
        if (KCONTIG) {   // a warp's 32 chunks: 8 rows by 4; each 8-lane phase one chunk of 8 rows, 8 bank groups apart
            o = c / 32 * 8 + c % 8;
            k = c % 32 / 8 * 8;
            d = dst + o * (BK + PAD) + k;
        } else {
            k = c / (R / 8);
            o = c % (R / 8) * 8;
            d = dst + k * (R + PAD) + o;
        }
        int go = o0 + o, gk = k0 + k;
        bool valid = go < o_end && gk < k_end;
        const bf16 *s = valid ? src + (KCONTIG ? (long)go * ld + gk : (long)gk * ld + go) : src;
        cp_async16(d, s, valid);
    }
}

template <typename TC> __device__ static inline void store_pair(TC *p, float x, float y, int accumulate);
template <> __device__ inline void store_pair<bf16>(bf16 *p, float x, float y, int accumulate)
{
    *(__nv_bfloat162 *)p = __floats2bfloat162_rn(x, y);
}
template <> __device__ inline void store_pair<float>(float *p, float x, float y, int accumulate)
{
    float2 v = accumulate ? *(float2 *)p : make_float2(0.0f, 0.0f);
    *(float2 *)p = make_float2(v.x + x, v.y + y);
}

template <int BM, int LA, int LB, int GROUP, typename TC> __global__ void __launch_bounds__(THREADS) grouped_gemm(Problem p)
{
    constexpr int MI = BM / 32;   // a warp's m16 tiles
    // this block's group and its ranges
    int e, m0, m_end, k0, k_end;
    const bf16 *B = p.B;
    TC *C = (TC *)p.C;
    if (GROUP == GROUP_ROWS) {
        int t = blockIdx.x;
        if (t >= p.tiles[p.E]) return;
        e = route_group_of_tile(p.tiles, p.E, t);
        m0 = p.offs[e] + (t - p.tiles[e]) * BM;
        m_end = p.offs[e + 1];
        k0 = 0;
        k_end = p.K;
        B += e * p.b_stride;
    } else {
        e = blockIdx.z;
        k0 = p.offs[e];
        k_end = p.offs[e + 1];
        if (k0 == k_end) return;   // no token: no gradient
        m0 = blockIdx.x * BM;
        m_end = p.M;
        C += e * p.c_stride;
    }
    int n0 = blockIdx.y * BN;

    DYNAMIC_SMEM(unsigned char, smem);
    const int a_elems = tile_elems<LA == A_ROW, BM>(), b_elems = tile_elems<LB == B_NK, BN>();
    bf16 *sA = (bf16 *)smem, *sB = sA + STAGES * a_elems;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp / 4, wn = warp % 4;
    float acc[MI][4][4] = {};   // [m16 tile][n8 tile][fragment]

    int n_tiles = (k_end - k0 + BK - 1) / BK;
    auto stage = [&](int s, int kt) {
        load_tile<LA == A_ROW, BM>(sA + s * a_elems, p.A, p.lda, m0, m_end, k0 + kt * BK, k_end);
        load_tile<LB == B_NK, BN>(sB + s * b_elems, B, p.ldb, n0, p.N, k0 + kt * BK, k_end);
    };
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < n_tiles) stage(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < n_tiles; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();   // tile kt has landed, and every warp is done with the stage refilled next
        if (kt + STAGES - 1 < n_tiles) stage((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        cp_async_commit();
        const bf16 *a = sA + (kt % STAGES) * a_elems, *b = sB + (kt % STAGES) * b_elems;
        #pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            // fragments through ldmatrix: lane l addresses row l % 8 of 8 x 8 matrix l / 8
            uint32_t fa[MI][4], fb[4][2];
            #pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                int m = wm * (BM / 2) + mi * 16;
                if (LA == A_ROW) ldmatrix_x4<false>(fa[mi], a + (m + lane % 16) * (BK + PAD) + kk + lane / 16 * 8);
                else ldmatrix_x4<true>(fa[mi], a + (kk + lane % 8 + lane / 16 * 8) * (BM + PAD) + m + lane / 8 % 2 * 8);
            }
            #pragma unroll
            for (int nj = 0; nj < 2; nj++) {
                int n = wn * 32 + nj * 16;
                uint32_t r[4];
                if (LB == B_NK) ldmatrix_x4<false>(r, b + (n + lane % 8 + lane / 16 * 8) * (BK + PAD) + kk + lane / 8 % 2 * 8);
                else ldmatrix_x4<true>(r, b + (kk + lane % 8 + lane / 8 % 2 * 8) * (BN + PAD) + n + lane / 16 * 8);
                fb[2 * nj][0] = r[0];
                fb[2 * nj][1] = r[1];
                fb[2 * nj + 1][0] = r[2];
                fb[2 * nj + 1][1] = r[3];
            }
            #pragma unroll
            for (int mi = 0; mi < MI; mi++)
                #pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], fa[mi], fb[ni]);
        }
    }
    cp_async_wait<0>();

    // accumulator fragment: rows lane / 4 (+ 8), columns 2 (lane % 4) (+ 1)
    #pragma unroll
    for (int mi = 0; mi < MI; mi++)
        #pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            int col = n0 + wn * 32 + ni * 8 + lane % 4 * 2;
            #pragma unroll
            for (int h = 0; h < 2; h++) {
                int r = m0 + wm * (BM / 2) + mi * 16 + lane / 4 + h * 8;
                if (r < m_end && col < p.N) store_pair<TC>(C + (long)r * p.ldc + col, acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1], p.accumulate);
            }
        }
}

int grouped_supported(int k, int n) { return k % 8 == 0 && n % 8 == 0 && k > 0 && n > 0; }

int grouped_tile_rows(int rows_per_expert) { return rows_per_expert < 192 ? 64 : 128; }

static void check_aligned(const void *p, const char *what)
{
    if ((uintptr_t)p % 16) BUG("grouped product: %s at %p is not 16-byte aligned", what, p);
}

template <int BM, int LA, int LB, int GROUP, typename TC> static void launch(const Problem *p, dim3 grid, cudaStream_t stream)
{
    const int bytes = STAGES * (tile_elems<LA == A_ROW, BM>() + tile_elems<LB == B_NK, BN>()) * (int)sizeof(bf16);
    auto kernel = grouped_gemm<BM, LA, LB, GROUP, TC>;
    static int ready;   // one attribute per instantiation: more than the default 48 KiB of shared memory
    if (!ready) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
        ready = 1;
    }
    check_aligned(p->A, "A");
    check_aligned(p->B, "B");
    if ((p->lda | p->ldb) % 8 || (GROUP == GROUP_ROWS && p->b_stride % 8) || (GROUP == GROUP_K && p->c_stride % 2))
        BUG("grouped product: strides %d, %d, %ld, %ld are not whole 16-byte rows", p->lda, p->ldb, p->b_stride, p->c_stride);
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    LAUNCH(kernel, grid, THREADS, bytes, stream, *p);
    LAUNCHED();
}

// A product over experts' rows with tiles of bm rows (tiles[] made for bm).
template <int LB, typename TC> static void launch_rows(const Problem *p, int bm, int n, cudaStream_t stream)
{
    dim3 grid(route_tile_bound(p->M, p->E, bm), cdiv(n, BN));
    if (bm == 64) launch<64, A_ROW, LB, GROUP_ROWS, TC>(p, grid, stream);
    else if (bm == 128) launch<128, A_ROW, LB, GROUP_ROWS, TC>(p, grid, stream);
    else BUG("grouped product: tiles of %d rows", bm);
}

void grouped_linear_forward(bf16 *out, const bf16 *inp, const bf16 *w, long w_stride, const int *offs, const int *tiles, int bm,
                            int A, int E, int k, int n, cudaStream_t stream)
{
    Problem p = {inp, w, out, k, k, n, w_stride, 0, offs, tiles, A, n, k, E, 0};
    launch_rows<B_NK, bf16>(&p, bm, n, stream);
}

void grouped_linear_backward_input(float *dinp, const bf16 *dout, const bf16 *w, long w_stride, const int *offs,
                                   const int *tiles, int bm, int A, int E, int k, int n, cudaStream_t stream)
{
    // dinp(m, k) = sum over j < n of dout(m, j) w(j, k): the sum runs over n
    Problem p = {dout, w, dinp, n, k, k, w_stride, 0, offs, tiles, A, k, n, E, 0};
    launch_rows<B_KN, float>(&p, bm, k, stream);
}

void grouped_linear_backward_weight(float *dw, long w_stride, const bf16 *dout, const bf16 *inp, const int *offs, int E, int k,
                                    int n, cudaStream_t stream)
{
    // dw_e(j, i) += sum over the group's rows r of dout(r, j) inp(r, i): m = j < n, n = i < k, the sum over rows
    Problem p = {dout, inp, dw, n, k, k, 0, w_stride, offs, NULL, n, k, 0, E, 1};
    launch<128, A_COL, B_KN, GROUP_K, float>(&p, dim3(cdiv(n, 128), cdiv(k, BN), E), stream);
}
