/* The GPU's grouped expert products decide where each row goes with
 * route_plan.h's functions, compiled here for the host: the chunked sort
 * the device runs (histograms, column bases, offsets, ranks) must give
 * route_sort's order, row, offsets and counts exactly, and the tiles must
 * cover every expert's rows once, within the bound the launch assumes.
 * route_gemm's problems, as a library's grouped GEMM reads them, must
 * compute each product as its definition says, writing every element of
 * the output once and leaving an expert without rows alone. The kernels
 * themselves run only on a GPU (tests/gpu/grouped_check). */
#include "../tap.h"
#include "base/base.h"
#include "cuda/route_plan.h"
#include "model/route.h"

#include <stdlib.h>
#include <string.h>

/* The device's steps one after another, as the three kernels run them. */
static void chunked_sort(int *order, int *row, int *offs, float *counts, int *tiles, const int *sel, int A, int E, int bm)
{
    int C = (A + ROUTE_CHUNK - 1) / ROUTE_CHUNK;
    int *hist = xcalloc((size_t)C * E + 1, sizeof(int)), *base = xcalloc((size_t)C * E + 1, sizeof(int));
    int *total = xmalloc((size_t)E * sizeof(int));
    for (int i = 0; i < A; i++) hist[(size_t)(i / ROUTE_CHUNK) * E + sel[i]]++;   /* route_histogram */
    for (int e = 0; e < E; e++) total[e] = route_column_bases(base, hist, e, C, E);   /* route_bases */
    route_offsets(offs, counts, tiles, total, E, bm);
    for (int e = 0; e < E; e++)
        for (int c = 0; c < C; c++) base[(size_t)c * E + e] += offs[e];
    for (int i = 0; i < A; i++) {   /* route_place */
        int c = i / ROUTE_CHUNK;
        const int *s = sel + (size_t)c * ROUTE_CHUNK;
        int r = base[(size_t)c * E + sel[i]] + route_rank_in_chunk(s, i - c * ROUTE_CHUNK);
        order[r] = i;
        row[i] = r;
    }
    free(hist);
    free(base);
    free(total);
}

static void check(const int *sel, int A, int E, int bm, const char *what)
{
    size_t a = (size_t)A + 1;
    int *o1 = xmalloc(a * sizeof(int)), *r1 = xmalloc(a * sizeof(int)), *o2 = xmalloc(a * sizeof(int)), *r2 = xmalloc(a * sizeof(int));
    int *f1 = xmalloc(((size_t)E + 1) * sizeof(int)), *f2 = xmalloc(((size_t)E + 1) * sizeof(int));
    int *tiles = xmalloc(((size_t)E + 1) * sizeof(int));
    float *c1 = xmalloc((size_t)E * sizeof(float)), *c2 = xmalloc((size_t)E * sizeof(float));
    route_sort(o1, r1, f1, c1, sel, A, E);
    memset(o2, 0xff, a * sizeof(int));
    memset(r2, 0xff, a * sizeof(int));
    chunked_sort(o2, r2, f2, c2, tiles, sel, A, E, bm);
    ok(!memcmp(o1, o2, (size_t)A * sizeof(int)) && !memcmp(r1, r2, (size_t)A * sizeof(int)) &&
           !memcmp(f1, f2, ((size_t)E + 1) * sizeof(int)) && !memcmp(c1, c2, (size_t)E * sizeof(float)),
       "%s: the chunked sort of %d assignments over %d experts is route_sort's, bit for bit", what, A, E);

    /* every tile below tiles[E] finds its expert, and the tiles cover each
     * expert's rows exactly once */
    int bound = route_tile_bound(A, E, bm), good = tiles[E] <= bound, next_row = 0;
    for (int t = 0; t < tiles[E] && good; t++) {   /* in order, the tiles walk the rows without gap or overlap */
        int e = route_group_of_tile(tiles, E, t), m0 = f2[e] + (t - tiles[e]) * bm;
        int end = m0 + bm < f2[e + 1] ? m0 + bm : f2[e + 1];
        good &= tiles[e] <= t && t < tiles[e + 1] && m0 == next_row && m0 < end;
        next_row = end;
    }
    ok(good && next_row == A, "%s: %d tiles of %d rows (bound %d) cover the %d rows once, each inside its expert", what, tiles[E],
       bm, bound, A);
    free(o1);
    free(r1);
    free(o2);
    free(r2);
    free(f1);
    free(f2);
    free(tiles);
    free(c1);
    free(c2);
}

/* C (= or +=) A B over one group's problem, as a grouped GEMM computes it */
static void generic_gemm(double *C, const double *A, const double *B, const RouteGemm *g, int accumulate, int *written)
{
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->N; j++) {
            double s = 0;
            for (int kk = 0; kk < g->K; kk++)
                s += A[g->a + (g->a_col ? (long)kk * g->lda + i : (long)i * g->lda + kk)] *
                     B[g->b + (g->b_kn ? (long)kk * g->ldb + j : (long)j * g->ldb + kk)];
            long at = g->c + (long)i * g->ldc + j;
            C[at] = accumulate ? C[at] + s : s;
            written[at]++;
        }
}

/* The three products of E experts through route_gemm, against their definitions. */
static void check_problems(int E, int k, int n, int A, uint64_t *s)
{
    int *sel = xmalloc(((size_t)A + 1) * sizeof(int)), *order = xmalloc(((size_t)A + 1) * sizeof(int));
    int *row = xmalloc(((size_t)A + 1) * sizeof(int)), *offs = xmalloc(((size_t)E + 1) * sizeof(int));
    float *counts = xmalloc((size_t)E * sizeof(float));
    for (int i = 0; i < A; i++) sel[i] = (int)(splitmix64(s) % (uint64_t)(E > 1 ? E - 1 : 1));   /* the last expert gets none */
    route_sort(order, row, offs, counts, sel, A, E);
    long ws = 3L * k * n + 8;   /* the weights' blocks apart, more than one product's */
    size_t nw = (size_t)E * ws, na = (size_t)A * (k > n ? k : n) + 1;
    double *w = xmalloc(nw * sizeof(double)), *x = xmalloc(na * sizeof(double)), *y = xmalloc(na * sizeof(double));
    double *c1 = xcalloc(nw > na ? nw : na, sizeof(double)), *c2 = xcalloc(nw > na ? nw : na, sizeof(double));
    int *written = xcalloc(nw > na ? nw : na, sizeof(int));
    for (size_t i = 0; i < nw; i++) w[i] = (double)(splitmix64(s) % 1000) - 500;
    for (size_t i = 0; i < na; i++) x[i] = (double)(splitmix64(s) % 1000) - 500, y[i] = (double)(splitmix64(s) % 1000) - 500;
    int same[3] = {1, 1, 1}, once[3] = {1, 1, 1}, aligned = 1, empty = 1;
    for (int p = ROUTE_FORWARD; p <= ROUTE_BACKWARD_WEIGHT; p++) {
        size_t nc = p == ROUTE_BACKWARD_WEIGHT ? nw : na;
        for (size_t i = 0; i < nc; i++) c1[i] = c2[i] = p == ROUTE_BACKWARD_WEIGHT ? w[i] : 0, written[i] = 0;
        for (int e = 0; e < E; e++) {
            RouteGemm g = route_gemm(p, offs, e, k, n, ws);
            /* bf16 operands (A, B) and the output (bf16 or fp32) at whole 16-byte pieces: TMA's rule */
            aligned &= g.a % 8 == 0 && g.b % 8 == 0 && g.c % 8 == 0 && g.lda % 8 == 0 && g.ldb % 8 == 0 && g.ldc % 8 == 0;
            if (offs[e + 1] == offs[e]) empty &= g.M == 0 && g.N == 0 && g.K == 0;
            if (p == ROUTE_FORWARD) generic_gemm(c1, x, w, &g, 0, written);
            else if (p == ROUTE_BACKWARD_INPUT) generic_gemm(c1, y, w, &g, 0, written);
            else generic_gemm(c1, y, x, &g, 1, written);
            int r0 = offs[e], rows = offs[e + 1] - offs[e];
            for (int i = 0; i < (p == ROUTE_BACKWARD_WEIGHT ? (rows ? n : 0) : rows); i++)   /* the definitions */
                for (int j = 0; j < (p == ROUTE_FORWARD ? n : k); j++) {
                    double v = 0;
                    if (p == ROUTE_FORWARD)
                        for (int q = 0; q < k; q++) v += x[(long)(r0 + i) * k + q] * w[e * ws + (long)j * k + q];
                    else if (p == ROUTE_BACKWARD_INPUT)
                        for (int q = 0; q < n; q++) v += y[(long)(r0 + i) * n + q] * w[e * ws + (long)q * k + j];
                    else
                        for (int q = 0; q < rows; q++) v += y[(long)(r0 + q) * n + i] * x[(long)(r0 + q) * k + j];
                    long at = p == ROUTE_FORWARD ? (long)(r0 + i) * n + j : p == ROUTE_BACKWARD_INPUT ? (long)(r0 + i) * k + j
                                                                                                        : e * ws + (long)i * k + j;
                    c2[at] = p == ROUTE_BACKWARD_WEIGHT ? c2[at] + v : v;
                }
        }
        for (size_t i = 0; i < nc; i++) same[p] &= c1[i] == c2[i];
        /* every output element once: the rows of all experts, or each expert with rows' whole block */
        for (size_t i = 0; i < nc; i++) {
            int want = 0;
            if (p == ROUTE_FORWARD) want = i < (size_t)A * n;
            else if (p == ROUTE_BACKWARD_INPUT) want = i < (size_t)A * k;
            else {
                int e = (int)(i / ws);
                want = (long)(i % ws) < (long)n * k && offs[e + 1] > offs[e];
            }
            once[p] &= written[i] == want;
        }
    }
    ok(same[0] && once[0], "route_gemm, %d experts, k %d, n %d, %d rows: the forward's problems compute out = inp . w_e^T, each element once",
       E, k, n, A);
    ok(same[1] && once[1], "route_gemm: the backward's dinp = dout . w_e, each element once");
    ok(same[2] && once[2], "route_gemm: dw_e += dout^T . inp, each expert with rows once, the others left alone");
    ok(aligned && empty, "route_gemm: offsets and leading dimensions in whole 16-byte pieces; an expert without rows a problem of no size");
    free(sel);
    free(order);
    free(row);
    free(offs);
    free(counts);
    free(w);
    free(x);
    free(y);
    free(c1);
    free(c2);
    free(written);
}

int main(void)
{
    sg_init("test_route_plan");
    uint64_t s = 11;
    /* sizes around the chunk (1024) and the tile (128); few and many experts */
    const int sizes[][2] = {{1, 1}, {5, 96}, {1023, 8}, {1024, 32}, {1025, 32}, {4096, 96}, {16384, 32}, {3000, 4096}};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int A = sizes[t][0], E = sizes[t][1];
        int *sel = xmalloc((size_t)A * sizeof(int));
        for (int i = 0; i < A; i++) sel[i] = (int)(splitmix64(&s) % (uint64_t)E);
        check(sel, A, E, 128, "uniform");
        for (int i = 0; i < A; i++) sel[i] = i % 3 ? 0 : E - 1;   /* collapsed: one expert takes most, the rest none */
        check(sel, A, E, 128, "collapsed");
        for (int i = 0; i < A; i++) sel[i] = (int)(splitmix64(&s) % (uint64_t)(E < 3 ? E : 3)) * (E / 3);   /* a few experts */
        check(sel, A, E, 64, "sparse");
        free(sel);
    }
    check(NULL, 0, 4, 128, "empty batch");
    check_problems(5, 16, 24, 37, &s);
    check_problems(1, 8, 8, 3, &s);
    check_problems(8, 32, 8, 0, &s);
    return tap_done();
}
