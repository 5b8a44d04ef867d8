/* The device table's choice and the GPU's kernel paths; see device.h. */
#include "model/device.h"
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const attention_names[ATTENTION_PATHS] = {"cublas", "flash", "cudnn"};
static const char *const experts_names[EXPERTS_PATHS] = {"cublas", "grouped", "cutlass"};

const char *attention_path_name(AttentionPath a) { return attention_names[a]; }
const char *experts_path_name(ExpertsPath e) { return experts_names[e]; }

int attention_path_parse(const char *name, AttentionPath *a)
{
    for (int i = 0; i < ATTENTION_PATHS; i++)
        if (!strcmp(name, attention_names[i])) { *a = (AttentionPath)i; return 0; }
    return -1;
}

int experts_path_parse(const char *name, ExpertsPath *e)
{
    for (int i = 0; i < EXPERTS_PATHS; i++)
        if (!strcmp(name, experts_names[i])) { *e = (ExpertsPath)i; return 0; }
    return -1;
}

/* The cuBLAS paths stay the default until the fused and grouped kernels,
 * hand-written or the libraries', are measured on a GPU (bench/gpu.md). */
void gpu_paths_default(GpuPaths *p)
{
    *p = (GpuPaths){.attention = ATTENTION_CUBLAS, .experts = EXPERTS_CUBLAS, .expert_streams = GPU_MAX_EXPERT_STREAMS};
    const char *v = getenv("SIGMA_ATTENTION");
    if (v && *v && attention_path_parse(v, &p->attention))
        warn("SIGMA_ATTENTION=%s: not cublas, flash or cudnn; ignored", v);
    v = getenv("SIGMA_EXPERTS");
    if (v && *v && experts_path_parse(v, &p->experts)) warn("SIGMA_EXPERTS=%s: not cublas, grouped or cutlass; ignored", v);
    v = getenv("SIGMA_EXPERT_STREAMS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > GPU_MAX_EXPERT_STREAMS)
            warn("SIGMA_EXPERT_STREAMS=%s: not a number from 1 to %d; ignored", v, GPU_MAX_EXPERT_STREAMS);
        else p->expert_streams = (int)n;
    }
}

/* ---- the CPU: model.c computes in the host model's own buffers ----------------------- */

size_t spans_total(const Span *spans, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++) t += spans[i].hi - spans[i].lo;
    return t;
}

typedef struct {
    float *moments;            /* [2 * owned]: AdamW m, then v, of the weights it owns, span after span */
    Span own[DEVICE_MAX_SPANS];/* the weights whose optimizer state it holds (own) */
    int n_own;
    size_t owned;              /* weights in them */
} CpuDevice;

static Device *cpu_open(Model *host, const Config *alloc, int B, int T, GpuPaths *paths, const ExpertExchange *ep, int verbose)
{
    (void)paths;
    (void)verbose;
    model_init_ep(host, alloc, B, T, ep);
    Device *d = xcalloc(1, sizeof *d);
    CpuDevice *c = xcalloc(1, sizeof *c);   /* the moments come with the first state or step: inference needs none */
    c->own[0] = (Span){0, host->n_params};
    c->n_own = 1;
    c->owned = host->n_params;
    *d = (Device){.ops = &cpu_device_ops, .host = host, .impl = c};
    return d;
}

static void cpu_close(Device *d)
{
    CpuDevice *c = d->impl;
    model_free(d->host);
    free(c->moments);
    free(c);
    free(d);
}

static void cpu_set_state(Device *d, const float *params, const float *moments)
{
    Model *m = d->host;
    CpuDevice *c = d->impl;
    if (params != m->params) memcpy(m->params, params, m->n_params * sizeof(float));
    if (!moments) return;
    size_t n = c->owned;
    if (!c->moments) c->moments = xmalloc((2 * n + 1) * sizeof(float));
    size_t at = 0;
    for (int i = 0; i < c->n_own; at += c->own[i].hi - c->own[i].lo, i++) {
        size_t lo = c->own[i].lo, len = c->own[i].hi - lo;
        memcpy(c->moments + at, moments + lo, len * sizeof(float));
        memcpy(c->moments + n + at, moments + m->n_params + lo, len * sizeof(float));
    }
}

static void cpu_get_state(Device *d, float *params, float *moments)
{
    Model *m = d->host;
    CpuDevice *c = d->impl;
    if (params != m->params) memcpy(params, m->params, m->n_params * sizeof(float));
    size_t n = c->owned, at = 0;
    for (int i = 0; i < c->n_own; at += c->own[i].hi - c->own[i].lo, i++) {
        size_t lo = c->own[i].lo, len = c->own[i].hi - lo;
        if (c->moments) {
            memcpy(moments + lo, c->moments + at, len * sizeof(float));
            memcpy(moments + m->n_params + lo, c->moments + n + at, len * sizeof(float));
        } else {
            memset(moments + lo, 0, len * sizeof(float));
            memset(moments + m->n_params + lo, 0, len * sizeof(float));
        }
    }
}

static Losses cpu_forward(Device *d, const uint32_t *inputs, const uint32_t *targets, const float *mask, const int *pos, int B,
                          int T, const BalanceOptions *bo)
{
    return model_forward(d->host, inputs, targets, mask, pos, B, T, bo);
}

static const float *cpu_logits(Device *d) { return model_logits(d->host); }
static void cpu_backward(Device *d, float ce_scale, float aux_scale) { model_backward(d->host, ce_scale, aux_scale); }
static void cpu_zero_grads(Device *d) { model_zero_grads(d->host); }
static double cpu_grad_norm(Device *d)
{
    CpuDevice *c = d->impl;
    double sq = 0;
    for (int i = 0; i < c->n_own; i++) {
        double n = l2_norm(d->host->grads + c->own[i].lo, c->own[i].hi - c->own[i].lo);
        sq += n * n;
    }
    return sqrt(sq);
}

/* Each tensor's part within each owned span, its moments at its place
 * among the owned weights. */
static void cpu_adamw(Device *d, const AdamWStep *s)
{
    Model *m = d->host;
    CpuDevice *c = d->impl;
    size_t n = c->owned;
    if (!c->moments) c->moments = xcalloc(2 * n + 1, sizeof(float));
    size_t at = 0;
    for (int k = 0; k < c->n_own; at += c->own[k].hi - c->own[k].lo, k++) {
        size_t lo = c->own[k].lo, hi = c->own[k].hi;
        for (int i = 0; i < m->n_tensors; i++) {
            const ParamTensor *p = &m->tensors[i];
            size_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
            if (a >= b) continue;
            adamw_update(m->params + a, c->moments + at + (a - lo), c->moments + n + at + (a - lo), m->grads + a, b - a, s, p->ndim == 2);
        }
    }
}

static void cpu_own(Device *d, const Span *spans, int n)
{
    CpuDevice *c = d->impl;
    if (n < 1 || n > DEVICE_MAX_SPANS || c->moments) BUG("cpu_own of %d spans, or after the moments", n);
    for (int i = 0; i < n; i++)
        if (spans[i].lo > spans[i].hi || spans[i].hi > d->host->n_params || (i && spans[i].lo < spans[i - 1].hi))
            BUG("cpu_own: span [%zu, %zu) of %zu", spans[i].lo, spans[i].hi, d->host->n_params);
    memcpy(c->own, spans, (size_t)n * sizeof *spans);
    c->n_own = n;
    c->owned = spans_total(spans, n);
}

static RouteSums cpu_route_sums(Device *d, int layer) { return model_route_sums(d->host, layer); }
static void cpu_use_local_rank(int local_rank) { (void)local_rank; }   /* the ranks of a machine share its cores */
static float *cpu_grads(Device *d) { return d->host->grads; }
static float *cpu_params(Device *d) { return d->host->params; }
static void cpu_params_changed(Device *d) { (void)d; }   /* the model computes from them directly */

static KvCache *cpu_kv_open(Device *d, int rows, int max_len, int max_step, int verbose)
{
    (void)verbose;
    return model_kv_open(d->host, rows, max_len, max_step);
}
static void cpu_kv_close(Device *d, KvCache *kv) { model_kv_free(kv); }
static const float *cpu_step(Device *d, KvCache *kv, const uint32_t *tokens, const int *rows, int n, const BalanceOptions *bo)
{
    return model_step(d->host, kv, tokens, rows, n, bo);
}

const DeviceOps cpu_device_ops = {
    .name = "cpu", .open = cpu_open, .close = cpu_close, .set_state = cpu_set_state, .get_state = cpu_get_state,
    .forward = cpu_forward, .logits = cpu_logits, .backward = cpu_backward, .zero_grads = cpu_zero_grads,
    .grad_norm = cpu_grad_norm, .adamw = cpu_adamw, .route_sums = cpu_route_sums,
    .use_local_rank = cpu_use_local_rank, .grads = cpu_grads, .params = cpu_params, .params_changed = cpu_params_changed,
    .own = cpu_own,
    .kv_open = cpu_kv_open, .kv_close = cpu_kv_close, .step = cpu_step,
};

/* ---- the choice ------------------------------------------------------------------------------ */

/* The one place that knows whether this build has the CUDA core. */
#ifdef SIGMA_CUDA
int gpu_count(void);
extern const DeviceOps cuda_device_ops;
static const DeviceOps *const cuda_ops = &cuda_device_ops;
#else
static int gpu_count(void) { return 0; }
static const DeviceOps *const cuda_ops = NULL;
#endif

const DeviceOps *device_select(const char *name, const char **why)
{
    const char *no_cuda = "this program was built without CUDA (no nvcc at build time, or a sanitizer build)";
    if (!strcmp(name, "cpu")) { *why = "asked for"; return &cpu_device_ops; }
    if (strcmp(name, "cuda") && strcmp(name, "auto")) usage_error("--device: expected cpu, cuda or auto, got '%s'", name);
    int auto_ = !strcmp(name, "auto");
    if (!cuda_ops) {
        if (!auto_) die("--device cuda: %s; use --device cpu", no_cuda);
        *why = no_cuda;
        return &cpu_device_ops;
    }
    if (!gpu_count()) {
        if (!auto_) die("--device cuda: no CUDA device is visible");
        *why = "no CUDA device is visible";
        return &cpu_device_ops;
    }
    *why = auto_ ? "a CUDA device is visible" : "asked for";
    return cuda_ops;
}
