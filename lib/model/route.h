/* The index logic of the MoE layer, shared by the CPU model and the CUDA
 * core's host side: the stable counting sort of (token, slot) assignments by
 * expert, the plan of expert parallelism's exchange of rows, and the sort of
 * token positions by token id (the embedding's gradient). */
#ifndef SIGMA_ROUTE_H
#define SIGMA_ROUTE_H

#include <stdint.h>

/* From sel[A] (the expert of assignment i = token*k + slot, each in 0..E-1):
 * counts[E] (as floats: they feed the balance terms), offs[E+1] (first
 * sorted row of each expert; offs[E] = A), order[A] (the assignments sorted
 * by expert, in assignment order within an expert) and row[A], its
 * inverse (the sorted row of assignment i). */
void route_sort(int *order, int *row, int *offs, float *counts, const int *sel, int A, int E);

/* Expert parallelism's exchange of one layer (model.h's ExpertExchange):
 * S ranks, each holding Eh experts, rank j the experts j*Eh .. (j+1)*Eh-1.
 * From this rank's expert-sorted rows, offs[S*Eh+1] (route_sort's), and the
 * counts it receives, rcnt[S*Eh] (rank j's rows for its held expert i at
 * j*Eh+i): the rows it sends each rank, srows[S] (the blocks of that rank's
 * experts in its sorted rows), the rows it receives from each, rrows[S], the
 * rows of each held expert in the order it computes them (by expert, then
 * by sending rank, then in the sender's order), roffs[Eh+1], and where each
 * received block begins: at_rank[j*Eh+i] in the order they arrive (by rank,
 * then expert), at_expert[j*Eh+i] in the computing order. */
typedef struct {
    int S, Eh;
    int *srows, *rrows;        /* [S] */
    int *roffs;                /* [Eh+1] */
    int *at_rank, *at_expert;  /* [S*Eh] */
} ExchangePlan;
void route_exchange_plan(ExchangePlan *p, const int *offs, const int *rcnt);
/* The received rows' computing order as a gather: computing row r is
 * arriving row perm[r], and arriving row a is computing row inv[a]
 * (R = roffs[Eh] of each). */
void route_exchange_perm(int *perm, int *inv, const ExchangePlan *p, const int *rcnt);

/* Positions 0..N-1 sorted by tok[] (stable): pos[N], and the start of each
 * run of one token, seg[0..runs] (seg[runs] = N); returns runs. */
int route_sort_tokens(int *pos, int *seg, const uint32_t *tok, int N);

#endif
