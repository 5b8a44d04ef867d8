/* One model on one device, behind one small table of functions: the trainer
 * (and sft, eval, generate, the distributed trainer after it) reach the
 * CPU model (model.h) and the CUDA core (cuda/gpu_model.h) the same way, with
 * no #ifdef of their own.
 *
 * The host Model stays the owner of the configuration (its cfg.top_k is the
 * k of the next forward), the tensor table, the expert bias (read when the
 * balance options ask for it) and the routing counts of the last forward
 * (host->counts, filled by every forward on either device). The device holds
 * the weights, gradients and AdamW moments it computes with; set_state and
 * get_state move them to and from host buffers of the model's layout (the
 * weights [n_params], the moments [2 * n_params]: m, then v; NULL moments
 * for inference). On the CPU the weights are the host model's own buffer. */
#ifndef SIGMA_DEVICE_H
#define SIGMA_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "model/adamw.h"
#include "model/kvcache.h"
#include "model/model.h"
#include "base/base.h"

/* ---- the GPU's kernel paths: chosen once, before the model is built --------------- */

typedef enum { ATTENTION_CUBLAS, ATTENTION_FLASH, ATTENTION_CUDNN, ATTENTION_PATHS } AttentionPath;   /* "cublas", "flash", "cudnn" */
typedef enum { EXPERTS_CUBLAS, EXPERTS_GROUPED, EXPERTS_CUTLASS, EXPERTS_PATHS } ExpertsPath;        /* "cublas", "grouped", "cutlass" */
#define GPU_MAX_EXPERT_STREAMS 4

typedef struct {
    AttentionPath attention;   /* cuBLAS products around a softmax kernel, the fused kernels (flash.cu), or cuDNN's (cudnn_attention.cu) */
    ExpertsPath experts;       /* per-expert cuBLAS products after a host sort, or grouped kernels: grouped.cu's or CUTLASS's */
    int expert_streams;        /* streams the per-expert products spread over, 1 .. GPU_MAX_EXPERT_STREAMS */
    int recompute;             /* recompute the experts' gate/up products in backward (less memory) */
} GpuPaths;

/* The defaults, then SIGMA_ATTENTION, SIGMA_EXPERTS, SIGMA_EXPERT_STREAMS
 * from the environment where set; a bad value is warned about and ignored. */
void gpu_paths_default(GpuPaths *p);
const char *attention_path_name(AttentionPath a);
const char *experts_path_name(ExpertsPath e);
int attention_path_parse(const char *name, AttentionPath *a);   /* 0, or -1 for an unknown name */
int experts_path_parse(const char *name, ExpertsPath *e);

/* ---- the device ------------------------------------------------------------------------ */

typedef struct Device Device;

/* Weights [lo, hi) of the model's layout. ZeRO-1 gives a rank at most two:
 * its share of the replicated weights and its share of its experts. */
typedef struct {
    size_t lo, hi;
} Span;
#define DEVICE_MAX_SPANS 2

typedef struct {
    const char *name;          /* "cpu", "cuda" */
    /* Buffers for micro-batches up to B x T and each layer's k up to
     * alloc->top_k. paths (GPU only; NULL for the defaults) is what is asked
     * for; where a shape does not allow a path the device takes another and
     * writes what it took back. ep: expert parallelism (model_init_ep), or
     * NULL for every expert here. Prints the memory it takes when verbose. */
    Device *(*open)(Model *host, const Config *alloc, int B, int T, GpuPaths *paths, const ExpertExchange *ep, int verbose);
    void (*close)(Device *d);
    void (*set_state)(Device *d, const float *params, const float *moments);
    void (*get_state)(Device *d, float *params, float *moments);
    /* model_forward's contract, at host->cfg's top-k */
    Losses (*forward)(Device *d, const uint32_t *inputs, const uint32_t *targets, const float *mask, const int *pos, int B,
                      int T, const BalanceOptions *bo);
    const float *(*logits)(Device *d);   /* [B*T, V] of the last forward, on the host */
    void (*backward)(Device *d, float ce_scale, float aux_scale);   /* model_backward's */
    void (*zero_grads)(Device *d);
    double (*grad_norm)(Device *d);
    /* AdamW over every tensor, weight decay on matrices only */
    void (*adamw)(Device *d, const AdamWStep *s);
    /* layer l's routing in the last forward, summed over its tokens */
    RouteSums (*route_sums)(Device *d, int layer);
    /* Many processes (comm/comm.h): the device of the local rank-th process
     * of a machine, chosen before open (a GPU each; nothing on the CPU); the
     * gradients and the weights [n_params] in the device's memory, which the
     * ranks sum and gather; params_changed after the weights were written
     * there by a collective (the GPU refreshes their bf16 copy). */
    void (*use_local_rank)(int local_rank);
    float *(*grads)(Device *d);
    float *(*params)(Device *d);
    void (*params_changed)(Device *d);
    /* ZeRO-1: this rank's share of the optimizer, the weights of n spans
     * (in order, apart). From then on AdamW updates those weights only, the
     * device keeps their moments only (set_state takes and get_state fills
     * those parts of the full layout), and grad_norm is the norm of their
     * gradients. The whole buffer until called: one process owns the span
     * [0, n_params). */
    void (*own)(Device *d, const Span *spans, int n);
    /* Inference with a key-value cache (model/kvcache.h): a cache of `rows`
     * sequences of up to max_len tokens, steps of up to max_step tokens;
     * a step's logits [groups, V] on the host, valid until the next step.
     * Prints the memory it takes when verbose. */
    KvCache *(*kv_open)(Device *d, int rows, int max_len, int max_step, int verbose);
    void (*kv_close)(Device *d, KvCache *kv);
    const float *(*step)(Device *d, KvCache *kv, const uint32_t *tokens, const int *rows, int n, const BalanceOptions *bo);
} DeviceOps;

struct Device {
    const DeviceOps *ops;
    Model *host;
    void *impl;                /* the device's own state */
};

extern const DeviceOps cpu_device_ops;

/* "cpu", "cuda" or "auto" (cuda when this build has the CUDA core and a GPU
 * is visible): the table, or a usage error saying why not. *why gets a
 * short reason for the choice, for the plan. */
const DeviceOps *device_select(const char *name, const char **why);
static inline Device *device_open(const DeviceOps *ops, Model *host, const Config *alloc, int B, int T, GpuPaths *paths,
                                  int verbose)
{
    return ops->open(host, alloc, B, T, paths, NULL, verbose);
}
static inline Device *device_open_ep(const DeviceOps *ops, Model *host, const Config *alloc, int B, int T, GpuPaths *paths,
                                     const ExpertExchange *ep, int verbose)
{
    return ops->open(host, alloc, B, T, paths, ep, verbose);
}

static inline Losses device_forward(Device *d, const uint32_t *inputs, const uint32_t *targets, const float *mask,
                                    const int *pos, int B, int T, const BalanceOptions *bo)
{
    return d->ops->forward(d, inputs, targets, mask, pos, B, T, bo);
}
static inline const float *device_logits(Device *d) { return d->ops->logits(d); }
static inline void device_backward(Device *d, float ce_scale, float aux_scale) { d->ops->backward(d, ce_scale, aux_scale); }
static inline void device_zero_grads(Device *d) { d->ops->zero_grads(d); }
static inline double device_grad_norm(Device *d) { return d->ops->grad_norm(d); }
static inline void device_adamw(Device *d, const AdamWStep *s) { d->ops->adamw(d, s); }
static inline float *device_grads(Device *d) { return d->ops->grads(d); }
static inline float *device_params(Device *d) { return d->ops->params(d); }
static inline void device_params_changed(Device *d) { d->ops->params_changed(d); }
static inline void device_own(Device *d, const Span *spans, int n) { d->ops->own(d, spans, n); }
/* The weights in spans[n], and the place of weight i among them (moments
 * are stored in that order). */
size_t spans_total(const Span *spans, int n);
static inline void device_set_state(Device *d, const float *params, const float *moments) { d->ops->set_state(d, params, moments); }
static inline void device_get_state(Device *d, float *params, float *moments) { d->ops->get_state(d, params, moments); }
static inline void device_close(Device *d) { if (d) d->ops->close(d); }
static inline RouteSums device_route_sums(Device *d, int layer) { return d->ops->route_sums(d, layer); }
static inline KvCache *device_kv_open(Device *d, int rows, int max_len, int max_step, int verbose)
{
    if (!d->ops->kv_open) die("the %s device has no key-value cache in this build", d->ops->name);
    return d->ops->kv_open(d, rows, max_len, max_step, verbose);
}
static inline void device_kv_close(Device *d, KvCache *kv) { if (kv) d->ops->kv_close(d, kv); }
static inline const float *device_step(Device *d, KvCache *kv, const uint32_t *tokens, const int *rows, int n,
                                       const BalanceOptions *bo)
{
    return d->ops->step(d, kv, tokens, rows, n, bo);
}

#endif
