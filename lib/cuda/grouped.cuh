// The experts' products as grouped products on the device: the tokens
// sorted by expert without the host (route_plan.h), then one kernel launch
// per product for all experts, reading each expert's rows from offs[] in
// device memory. Nothing waits for the host, so the step can be queued
// whole (and captured as a CUDA graph).
//
// The kernel is a tiled bf16 product on the tensor cores (mma.sync
// m16n8k16, fp32 accumulators in registers), tiles of 128 (or 64) x 128 x
// 32 over a three-stage cp.async pipeline. Each output tile belongs to one thread
// block and sums its k in a fixed order: deterministic, no atomics.
// Needs the contiguous dimensions (K and N below) to be multiples of 8 and
// the pointers 16-byte aligned: see grouped_supported. Every kernel runs on
// `stream`.
#ifndef SIGMA_CUDA_GROUPED_CUH
#define SIGMA_CUDA_GROUPED_CUH

#include "cuda/common.cuh"

// Whether the grouped products handle rows of k and n elements.
int grouped_supported(int k, int n);
// The rows of a tile (64 or 128) for experts that get about this many rows
// each: a tile's rows past its expert's are computed for nothing.
int grouped_tile_rows(int rows_per_expert);

// The stable counting sort of sel[A] (the expert of each (token, slot))
// by expert, as route_sort: order[A], row[A], offs[E+1], counts[E] and the
// tiles of bm rows, tiles[E+1]. scratch: grouped_route_scratch ints.
size_t grouped_route_scratch(int A, int E);
void grouped_route(int *order, int *row, int *offs, float *counts, int *tiles, int *scratch, const int *sel, int A, int E, int bm,
                   cudaStream_t stream);

// For each expert e, over its rows offs[e] .. offs[e+1] of the A sorted rows
// (tiles[] of bm rows, from grouped_route):
//   out[rows, n] (bf16) = inp[rows, k] . w_e^T,   w_e = w + e * w_stride, [n, k]
void grouped_linear_forward(bf16 *out, const bf16 *inp, const bf16 *w, long w_stride, const int *offs, const int *tiles, int bm,
                            int A, int E, int k, int n, cudaStream_t stream);
//   dinp[rows, k] (fp32) = dout[rows, n] . w_e
void grouped_linear_backward_input(float *dinp, const bf16 *dout, const bf16 *w, long w_stride, const int *offs,
                                   const int *tiles, int bm, int A, int E, int k, int n, cudaStream_t stream);
//   dw_e[n, k] (fp32) += dout[rows, n]^T . inp[rows, k],   dw_e = dw + e * w_stride;
//   an expert without rows is left as it is
void grouped_linear_backward_weight(float *dw, long w_stride, const bf16 *dout, const bf16 *inp, const int *offs, int E, int k,
                                    int n, cudaStream_t stream);

#endif
