/* The MoE index logic that the CPU model and the CUDA core's host side
 * share (route.h), against a direct reading of its definition: every
 * expert's rows hold its assignments in order, row inverts order, offs and
 * counts agree; expert parallelism's exchange plan, every rank of a group
 * simulated here; and the token sort of the embedding's gradient. */
#include "../tap.h"
#include "base/base.h"
#include "model/route.h"

#include <stdlib.h>
#include <string.h>

static void check_sort(const int *sel, int A, int E, const char *what)
{
    int *order = xmalloc((size_t)A * sizeof(int) + 1), *row = xmalloc((size_t)A * sizeof(int) + 1);
    int *offs = xmalloc(((size_t)E + 1) * sizeof(int));
    float *counts = xmalloc((size_t)E * sizeof(float));
    route_sort(order, row, offs, counts, sel, A, E);
    int good = offs[0] == 0 && offs[E] == A, r = 0;
    for (int e = 0; e < E && good; e++) {   /* the definition: expert by expert, assignments in order */
        int c = 0;
        for (int i = 0; i < A; i++)
            if (sel[i] == e) {
                good &= order[r] == i && row[i] == r;
                r++;
                c++;
            }
        good &= counts[e] == (float)c && offs[e + 1] - offs[e] == c;
    }
    ok(good && r == A, "%s: %d assignments over %d experts sorted stably, with inverse, offsets and counts", what, A, E);
    free(order);
    free(row);
    free(offs);
    free(counts);
}

/* S ranks of Eh experts each, every rank with A assignments of its own
 * (sel[j][A]): each rank's plan against the rows that reach it, written out
 * one by one as (sending rank, expert, row in the sender's sorted order). */
static void check_exchange(int S, int Eh, int A, uint64_t *s, int skew, const char *what)
{
    int E = S * Eh, good = 1;
    int *offs = xmalloc((size_t)S * (E + 1) * sizeof(int)), *order = xmalloc((size_t)A * sizeof(int) + 1);
    int *row = xmalloc((size_t)A * sizeof(int) + 1), *sel = xmalloc((size_t)A * sizeof(int) + 1);
    float *counts = xmalloc((size_t)E * sizeof(float));
    for (int j = 0; j < S; j++) {
        for (int i = 0; i < A; i++) sel[i] = skew ? (int)(splitmix64(s) % (uint64_t)Eh) : (int)(splitmix64(s) % (uint64_t)E);
        route_sort(order, row, offs + (size_t)j * (E + 1), counts, sel, A, E);
    }
    int *rcnt = xmalloc((size_t)E * sizeof(int)), *arrive = xmalloc((size_t)3 * S * A * sizeof(int) + 1);
    int *perm = xmalloc((size_t)2 * S * A * sizeof(int) + 1), *inv = perm + (size_t)S * A;
    int *buf = xmalloc((size_t)(2 * S + Eh + 1 + 2 * E) * sizeof(int));
    for (int r = 0; r < S; r++) {
        ExchangePlan p = {.S = S, .Eh = Eh, .srows = buf, .rrows = buf + S, .roffs = buf + 2 * S, .at_rank = buf + 2 * S + Eh + 1,
                          .at_expert = buf + 2 * S + Eh + 1 + E};
        for (int j = 0; j < S; j++)
            for (int i = 0; i < Eh; i++) {
                const int *o = offs + (size_t)j * (E + 1);
                rcnt[j * Eh + i] = o[r * Eh + i + 1] - o[r * Eh + i];
            }
        route_exchange_plan(&p, offs + (size_t)r * (E + 1), rcnt);
        route_exchange_perm(perm, inv, &p, rcnt);
        int R = 0;   /* the rows in the order they arrive: rank by rank, each its block for rank r's experts */
        for (int j = 0; j < S; j++) {
            const int *o = offs + (size_t)j * (E + 1);
            good &= p.rrows[j] == o[(r + 1) * Eh] - o[r * Eh];
            for (int x = o[r * Eh]; x < o[(r + 1) * Eh]; x++, R++) {
                int e = r * Eh;
                while (x >= o[e + 1]) e++;
                arrive[3 * R] = j, arrive[3 * R + 1] = e, arrive[3 * R + 2] = x;
            }
        }
        const int *mine = offs + (size_t)r * (E + 1);
        for (int j = 0; j < S; j++) good &= p.srows[j] == mine[(j + 1) * Eh] - mine[j * Eh];
        good &= p.roffs[0] == 0 && p.roffs[Eh] == R;
        for (int c = 0; c < R && good; c++) {   /* computing order: by expert, then sender, then sender's order */
            const int *a = arrive + 3 * perm[c];
            good &= inv[perm[c]] == c && a[1] - r * Eh >= 0 && c >= p.roffs[a[1] - r * Eh] && c < p.roffs[a[1] - r * Eh + 1];
            if (c > 0) {
                const int *b = arrive + 3 * perm[c - 1];
                good &= b[1] < a[1] || (b[1] == a[1] && (b[0] < a[0] || (b[0] == a[0] && b[2] < a[2])));
            }
        }
    }
    ok(good, "%s: %d ranks of %d experts, %d rows each: every rank's plan sends, receives and orders the rows as defined", what,
       S, Eh, A);
    free(offs), free(order), free(row), free(sel), free(counts), free(rcnt), free(arrive), free(perm), free(buf);
}

int main(void)
{
    sg_init("test_route");
    uint64_t s = 7;
    const int sizes[][2] = {{1, 1}, {64, 8}, {1000, 96}, {4096, 16}, {37, 200}};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int A = sizes[t][0], E = sizes[t][1];
        int *sel = xmalloc((size_t)A * sizeof(int));
        for (int i = 0; i < A; i++) sel[i] = (int)(splitmix64(&s) % (uint64_t)E);
        check_sort(sel, A, E, "uniform");
        for (int i = 0; i < A; i++) sel[i] = i % 3 ? 0 : E - 1;   /* collapsed: one expert takes most, the rest none */
        check_sort(sel, A, E, "collapsed");
        free(sel);
    }
    check_sort(NULL, 0, 4, "empty batch");
    check_exchange(1, 8, 100, &s, 0, "exchange, one rank");
    check_exchange(2, 4, 300, &s, 0, "exchange");
    check_exchange(8, 12, 1000, &s, 0, "exchange");
    check_exchange(4, 3, 200, &s, 1, "exchange, every row to rank 0's experts");
    check_exchange(3, 2, 0, &s, 0, "exchange, no rows");

    const int N = 3000;
    uint32_t *tok = xmalloc(N * sizeof(uint32_t));
    int *pos = xmalloc(N * sizeof(int)), *seg = xmalloc((N + 1) * sizeof(int));
    for (int n = 0; n < N; n++) tok[n] = (uint32_t)(splitmix64(&s) % 500);
    int runs = route_sort_tokens(pos, seg, tok, N), good = seg[0] == 0 && seg[runs] == N, distinct = 0;
    char seen[500] = {0};
    for (int n = 0; n < N; n++) distinct += !seen[tok[n]]++;
    for (int u = 0; u < runs && good; u++)
        for (int j = seg[u]; j < seg[u + 1]; j++) {
            good &= tok[pos[j]] == tok[pos[seg[u]]];
            if (j > seg[u]) good &= pos[j] > pos[j - 1];   /* positions in order within a token */
        }
    for (int u = 1; u < runs && good; u++) good &= tok[pos[seg[u]]] > tok[pos[seg[u - 1]]];
    ok(good && runs == distinct, "token sort: %d positions in %d runs of one token each, ascending, stable", N, runs);
    free(tok);
    free(pos);
    free(seg);
    return tap_done();
}
