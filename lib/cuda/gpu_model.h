/* The Sigma-MoE model on an NVIDIA GPU: the same model as model.h, trained
 * the same way, checked against the CPU reference (tests/gpu/).
 *
 * Precision: bf16 weights (a copy refreshed by every AdamW step) and bf16
 * activations feeding the matrix products; fp32 master weights, AdamW
 * moments and gradients (so micro-batches accumulate without rounding);
 * router logits, softmax, top-k, norm statistics, the residual stream,
 * losses and balance terms in fp32. Matrix products through cuBLAS, or the
 * fused attention and grouped expert kernels (hand-written, or cuDNN's and
 * CUTLASS's) where GpuPaths asks for them, with fp32 accumulation.
 *
 * The host Model (model.h) stays the owner of the configuration, the tensor
 * table, the expert bias and the checkpoint files; a GpuModel mirrors its
 * parameter layout on the device. Deterministic: the same inputs give the
 * same bits on the same GPU (no floating-point atomics; every sum in a
 * fixed order). */
#ifndef SIGMA_GPU_MODEL_H
#define SIGMA_GPU_MODEL_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "model/adamw.h"
#include "model/device.h"
#include "model/kvcache.h"
#include "model/model.h"

typedef struct GpuModel GpuModel;

/* Number of CUDA devices (0 when none or no driver). */
int gpu_count(void);
/* Buffers for micro-batches up to B x T and each layer's top-k up to
 * alloc->top_k, laid out like host->tensors. paths (in and out; NULL:
 * gpu_paths_default()) is what is asked for: the attention and expert
 * kernels, the experts' streams, and recompute (keep only the expert
 * inputs and recompute gate/up and SwiGLU in backward); where the shapes do
 * not allow a path (flash_supported, grouped_supported), or a library's
 * path cannot start (no cuDNN, no CUTLASS kernels in the build, another
 * GPU: a warning says why), the model takes the cuBLAS one, and *paths gets
 * what it took. Prints the memory of each buffer when verbose. */
GpuModel *gpu_model_create(const Model *host, const Config *alloc, int B, int T, GpuPaths *paths, int verbose);
void gpu_model_free(GpuModel *g);
size_t gpu_model_bytes(const GpuModel *g);

/* fp32 master weights in and out (the bf16 copy follows); AdamW moments
 * m[n_params], v[n_params] in and out. */
void gpu_model_set_params(GpuModel *g, const float *params);
void gpu_model_get_params(GpuModel *g, float *params);
void gpu_model_set_moments(GpuModel *g, const float *moments);   /* [2 * n_params]: m then v */
void gpu_model_get_moments(GpuModel *g, float *moments);
void gpu_model_get_grads(GpuModel *g, float *grads);
void gpu_model_set_grads(GpuModel *g, const float *grads);   /* tests: the optimizer on given gradients */

/* As model_forward, at cfg's top-k (at most alloc's); pos[B*T] or NULL as
 * model_forward's (packed rows: each token's position in its document,
 * checked by model_check_positions). expert_bias [L * E] is read when the
 * balance kind is bias. counts[L * E] gets the tokens routed to each
 * expert. */
Losses gpu_model_forward(GpuModel *g, const Config *cfg, const uint32_t *inputs, const uint32_t *targets, const float *mask,
                         const int *pos, int B, int T, const BalanceOptions *bo, const float *expert_bias, float *counts);
/* logits [B*T, V] of the last forward, copied to the host */
const float *gpu_model_logits(GpuModel *g);
/* expert of each (token, slot) of layer l in the last forward: sel[B*T*k] */
const int *gpu_model_selection(GpuModel *g, int layer, int *k);
void gpu_model_backward(GpuModel *g, float ce_scale, float aux_scale);   /* model_backward's scales */
void gpu_model_zero_grads(GpuModel *g);
/* the fp32 gradients [n_params] in device memory, after the last backward has finished */
float *gpu_model_grads(GpuModel *g);
float *gpu_model_params(GpuModel *g);          /* the fp32 weights [n_params] in device memory */
void gpu_model_params_changed(GpuModel *g);    /* they were written there: refresh the bf16 copy */
/* ZeRO-1 (device.h's own): AdamW, the moments and the gradient norm of the weights [lo, hi) only. */
void gpu_model_own(GpuModel *g, const Span *spans, int n);
/* The GPU of the local rank-th process of a machine (local_rank modulo the GPUs visible). */
void gpu_use_device(int local_rank);
double gpu_model_grad_norm(GpuModel *g);
/* AdamW over every tensor (weight decay on matrices), then the bf16 copy. */
void gpu_model_adamw(GpuModel *g, const AdamWStep *s);
/* as model_route_sums for the last forward */
RouteSums gpu_model_route_sums(const GpuModel *g, int layer);

/* Inference with a key-value cache (model/kvcache.h): the device's half of
 * kv (kv_cache_init'ed by the caller; kv->bytes becomes the bf16 cache's),
 * its own buffers, apart from the forward's; and a step, as model_step, at
 * cfg's top-k (at most alloc's), routing by expert_bias [L * E] where the
 * balance kind is bias. The logits [groups, V] come back on the host. */
void gpu_model_kv_open(GpuModel *g, KvCache *kv, int verbose);
void gpu_model_kv_free(GpuModel *g, KvCache *kv);
const float *gpu_model_step(GpuModel *g, KvCache *kv, const Config *cfg, const uint32_t *tokens, const int *rows, int n,
                            const BalanceOptions *bo, const float *expert_bias);

/* Tests: fill every activation and scratch buffer with NaN, so a kernel
 * that reads what no kernel wrote shows up. */
void gpu_model_poison(GpuModel *g);
/* Benchmarks: time spent per phase (CUDA events) since the last reset,
 * when profiling is on; prints a table to f. */
void gpu_model_profile(GpuModel *g, int on);
void gpu_model_profile_print(GpuModel *g, FILE *f);
/* Benchmarks: the range an external profiler records when started with
 * collection off (ncu --profile-from-start off); nothing otherwise. */
void gpu_profiler_range(int on);
/* A large bf16 matrix product's measured TFLOP/s (n x n x n). */
double gpu_gemm_peak_tflops(int n);

#ifdef __cplusplus
}
#endif

#endif
