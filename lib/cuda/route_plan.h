/* The index logic of the GPU's grouped expert products, as plain C that
 * both the CUDA kernels (grouped.cu) and the host's unit tests compile, so
 * that what decides where each row goes is tested without a GPU.
 *
 * The sort: the same stable counting sort as route_sort (route.h), split so
 * that no step waits for the host. Assignments are cut into chunks of
 * ROUTE_CHUNK; each chunk counts its experts (hist[C][E]); each expert's
 * column of counts becomes running bases; the experts' totals become the
 * offsets; and every assignment lands at its chunk's base for its expert
 * plus its rank among the chunk's earlier assignments to that expert.
 *
 * The tiles: a grouped product over rows cuts each expert's rows into tiles
 * of bm; tiles[e] (the first tile of expert e) lets each thread block find
 * its expert with a binary search, and the launch needs no host count: an
 * upper bound on the tiles is known from A and E alone.
 *
 * The problems: a library's grouped GEMM (CUTLASS's, cutlass_experts.cu)
 * takes each group's sizes, operands and leading dimensions from device
 * memory; route_gemm says what they are for expert e of each product, from
 * the offsets the sort left, so that a kernel of one thread per expert
 * writes them and no size goes through the host. */
#ifndef SIGMA_ROUTE_PLAN_H
#define SIGMA_ROUTE_PLAN_H

#ifdef __CUDACC__
#define ROUTE_HD __host__ __device__
#else
#define ROUTE_HD
#endif

#define ROUTE_CHUNK 1024   /* assignments per chunk: one thread block each */

/* How many earlier assignments of chunk s[] went to the expert of s[t]:
 * its place among them (stable: assignment order). */
ROUTE_HD static inline int route_rank_in_chunk(const int *s, int t)
{
    int e = s[t], r = 0;
    for (int j = 0; j < t; j++) r += s[j] == e;
    return r;
}

/* Expert e's column of hist[C][E]: base[c][e] = its count in chunks before
 * c; returns its total. */
ROUTE_HD static inline int route_column_bases(int *base, const int *hist, int e, int C, int E)
{
    int run = 0;
    for (int c = 0; c < C; c++) {
        base[(long)c * E + e] = run;
        run += hist[(long)c * E + e];
    }
    return run;
}

/* From each expert's total[E]: offs[E+1] (its first sorted row), counts[E]
 * (as floats, for the balance terms) and tiles[E+1] (its first tile of bm
 * rows). */
ROUTE_HD static inline void route_offsets(int *offs, float *counts, int *tiles, const int *total, int E, int bm)
{
    offs[0] = 0;
    tiles[0] = 0;
    for (int e = 0; e < E; e++) {
        offs[e + 1] = offs[e] + total[e];
        counts[e] = (float)total[e];
        tiles[e + 1] = tiles[e] + (total[e] + bm - 1) / bm;
    }
}

/* Tiles of bm rows over groups that hold A rows in all: never more than
 * this, however the rows fall (each group wastes under one tile). */
ROUTE_HD static inline int route_tile_bound(int A, int E, int bm) { return (A + bm - 1) / bm + E; }

/* The group of tile t < tiles[E]: the last e with tiles[e] <= t (empty
 * groups have no tile and are passed over). */
ROUTE_HD static inline int route_group_of_tile(const int *tiles, int E, int t)
{
    int lo = 0, hi = E - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tiles[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* The three products of an expert's rows offs[e] .. offs[e+1] (rows =
 * their count), with its weights w_e = w + e * w_stride ([n, k] row-major):
 *   ROUTE_FORWARD:         out[rows, n]  = inp[rows, k] . w_e^T
 *   ROUTE_BACKWARD_INPUT:  dinp[rows, k] = dout[rows, n] . w_e
 *   ROUTE_BACKWARD_WEIGHT: dw_e[n, k]   += dout[rows, n]^T . inp[rows, k]
 * as C[m, nn] = sum over kk < K of A(i, kk) B(kk, j): sizes M x N x K, the
 * element offsets of A, B and C (C is written row-major, ldc apart) from
 * the bases the product names (A: inp, dout, dout; B: w, w, inp; C: out,
 * dinp, dw), and where the operands sit: A(i, kk) at A[i * lda + kk]
 * (a_col 0) or A[kk * lda + i] (a_col 1); B(kk, j) at B[j * ldb + kk]
 * (b_kn 0) or B[kk * ldb + j] (b_kn 1). An expert without rows is a
 * product of no size (0 x 0 x 0): no tile, and its weights' gradient left
 * as it was. */
enum { ROUTE_FORWARD, ROUTE_BACKWARD_INPUT, ROUTE_BACKWARD_WEIGHT };
typedef struct {
    int M, N, K;
    long a, b, c;              /* element offsets */
    int lda, ldb, ldc, a_col, b_kn;
} RouteGemm;

ROUTE_HD static inline RouteGemm route_gemm(int product, const int *offs, int e, int k, int n, long w_stride)
{
    long r0 = offs[e];
    int rows = offs[e + 1] - offs[e];
    RouteGemm g = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (product == ROUTE_FORWARD) {
        RouteGemm f = {rows, n, k, r0 * k, e * w_stride, r0 * n, k, k, n, 0, 0};
        g = f;
    } else if (product == ROUTE_BACKWARD_INPUT) {
        RouteGemm f = {rows, k, n, r0 * n, e * w_stride, r0 * k, n, k, k, 0, 1};
        g = f;
    } else {
        RouteGemm f = {n, k, rows, r0 * n, r0 * k, e * w_stride, n, k, k, 1, 1};
        g = f;
    }
    if (rows == 0) g.M = g.N = g.K = 0;
    return g;
}

#endif
