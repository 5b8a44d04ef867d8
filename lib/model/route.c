/* The MoE layer's index logic: see route.h. */
#include "model/route.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

void route_sort(int *order, int *row, int *offs, float *counts, const int *sel, int A, int E)
{
    memset(offs, 0, ((size_t)E + 1) * sizeof(int));
    for (int i = 0; i < A; i++) {
        if (sel[i] < 0 || sel[i] >= E) BUG("assignment %d routed to expert %d of %d", i, sel[i], E);
        offs[sel[i] + 1]++;
    }
    for (int e = 0; e < E; e++) {
        counts[e] = (float)offs[e + 1];
        offs[e + 1] += offs[e];
    }
    for (int i = 0; i < A; i++) {   /* offs[e] walks as a cursor, then is restored below */
        int r = offs[sel[i]]++;
        order[r] = i;
        row[i] = r;
    }
    for (int e = E; e > 0; e--) offs[e] = offs[e - 1];
    offs[0] = 0;
}

void route_exchange_plan(ExchangePlan *p, const int *offs, const int *rcnt)
{
    const int S = p->S, Eh = p->Eh;
    int run = 0;
    for (int j = 0; j < S; j++) {
        p->srows[j] = offs[(j + 1) * Eh] - offs[j * Eh];
        p->rrows[j] = 0;
        for (int i = 0; i < Eh; i++) {
            if (rcnt[j * Eh + i] < 0) BUG("rank %d sends %d rows for expert %d", j, rcnt[j * Eh + i], i);
            p->at_rank[j * Eh + i] = run;
            run += rcnt[j * Eh + i];
            p->rrows[j] += rcnt[j * Eh + i];
        }
    }
    run = 0;
    for (int i = 0; i < Eh; i++) {
        p->roffs[i] = run;
        for (int j = 0; j < S; j++) {
            p->at_expert[j * Eh + i] = run;
            run += rcnt[j * Eh + i];
        }
    }
    p->roffs[Eh] = run;
}

void route_exchange_perm(int *perm, int *inv, const ExchangePlan *p, const int *rcnt)
{
    for (int b = 0; b < p->S * p->Eh; b++)
        for (int r = 0; r < rcnt[b]; r++) {
            perm[p->at_expert[b] + r] = p->at_rank[b] + r;
            inv[p->at_rank[b] + r] = p->at_expert[b] + r;
        }
}

typedef struct {
    uint32_t tok;
    int pos;
} TokPos;

static int cmp_tokpos(const void *a, const void *b)
{
    const TokPos *x = a, *y = b;
    if (x->tok != y->tok) return x->tok < y->tok ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);   /* stable: by position within a token */
}

int route_sort_tokens(int *pos, int *seg, const uint32_t *tok, int N)
{
    TokPos *tp = xmalloc((size_t)N * sizeof *tp);
    for (int n = 0; n < N; n++) tp[n] = (TokPos){tok[n], n};
    qsort(tp, (size_t)N, sizeof *tp, cmp_tokpos);
    int runs = 0;
    for (int n = 0; n < N; n++) {
        pos[n] = tp[n].pos;
        if (n == 0 || tp[n].tok != tp[n - 1].tok) seg[runs++] = n;
    }
    seg[runs] = N;
    free(tp);
    return runs;
}
