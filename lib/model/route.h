/* The index logic of the MoE layer, shared by the CPU model and the CUDA
 * core's host side: the stable counting sort of (token, slot) assignments by
 * expert, and of token positions by token id (the embedding's gradient). */
#ifndef SIGMA_ROUTE_H
#define SIGMA_ROUTE_H

#include <stdint.h>

/* From sel[A] (the expert of assignment i = token*k + slot, each in 0..E-1):
 * counts[E] (as floats: they feed the balance terms), offs[E+1] (first
 * sorted row of each expert; offs[E] = A), order[A] (the assignments sorted
 * by expert, in assignment order within an expert) and row[A], its
 * inverse (the sorted row of assignment i). */
void route_sort(int *order, int *row, int *offs, float *counts, const int *sel, int A, int E);

/* Positions 0..N-1 sorted by tok[] (stable): pos[N], and the start of each
 * run of one token, seg[0..runs] (seg[runs] = N); returns runs. */
int route_sort_tokens(int *pos, int *seg, const uint32_t *tok, int N);

#endif
