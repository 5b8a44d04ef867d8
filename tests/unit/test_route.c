/* The MoE index logic that the CPU model and the CUDA core's host side
 * share (route.h), against a direct reading of its definition: every
 * expert's rows hold its assignments in order, row inverts order, offs and
 * counts agree; and the token sort of the embedding's gradient. */
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
