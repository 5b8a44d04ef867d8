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
 * upper bound on the tiles is known from A and E alone. */
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

#endif
