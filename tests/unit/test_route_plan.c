/* The GPU's grouped expert products decide where each row goes with
 * route_plan.h's functions, compiled here for the host: the chunked sort
 * the device runs (histograms, column bases, offsets, ranks) must give
 * route_sort's order, row, offsets and counts exactly, and the tiles must
 * cover every expert's rows once, within the bound the launch assumes. The
 * kernels themselves run only on a GPU (tests/gpu/grouped_check). */
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
    return tap_done();
}
