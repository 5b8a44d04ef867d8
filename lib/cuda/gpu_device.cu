// The CUDA core behind the device table (model/device.h): gpu_model.h's
// functions, with the host Model keeping the configuration, the tensor
// table, the expert bias and the routing counts.
#include "cuda/gpu_model.h"

#include <stdlib.h>

extern "C" {
#include "base/base.h"
#include "model/device.h"
}

extern "C" const DeviceOps cuda_device_ops;

static GpuModel *gpu(Device *d) { return (GpuModel *)d->impl; }

static Device *cuda_open(Model *host, const Config *alloc, int B, int T, GpuPaths *paths, const ExpertExchange *ep, int verbose)
{
    model_init_ep(host, alloc, 1, 1, ep);   // no activations on the host for a batch it never runs
    GpuPaths asked;
    if (!paths) { gpu_paths_default(&asked); paths = &asked; }
    Device *d = (Device *)xcalloc(1, sizeof *d);
    d->ops = &cuda_device_ops;
    d->host = host;
    d->impl = gpu_model_create(host, alloc, B, T, paths, verbose);   // writes back the paths it took
    return d;
}

static void cuda_close(Device *d)
{
    gpu_model_free(gpu(d));
    model_free(d->host);
    free(d);
}

static void cuda_set_state(Device *d, const float *params, const float *moments)
{
    gpu_model_set_params(gpu(d), params);
    if (moments) gpu_model_set_moments(gpu(d), moments);
}

static void cuda_get_state(Device *d, float *params, float *moments)
{
    gpu_model_get_params(gpu(d), params);
    gpu_model_get_moments(gpu(d), moments);
}

static Losses cuda_forward(Device *d, const uint32_t *inputs, const uint32_t *targets, const float *mask, const int *pos, int B,
                           int T, const BalanceOptions *bo)
{
    Model *m = d->host;
    return gpu_model_forward(gpu(d), &m->cfg, inputs, targets, mask, pos, B, T, bo, m->expert_bias, m->counts);
}

static const float *cuda_logits(Device *d) { return gpu_model_logits(gpu(d)); }
static void cuda_backward(Device *d, float ce_scale, float aux_scale) { gpu_model_backward(gpu(d), ce_scale, aux_scale); }
static void cuda_zero_grads(Device *d) { gpu_model_zero_grads(gpu(d)); }
static double cuda_grad_norm(Device *d) { return gpu_model_grad_norm(gpu(d)); }
static void cuda_adamw(Device *d, const AdamWStep *s) { gpu_model_adamw(gpu(d), s); }
static RouteSums cuda_route_sums(Device *d, int layer) { return gpu_model_route_sums(gpu(d), layer); }
static void cuda_use_local_rank(int local_rank) { gpu_use_device(local_rank); }
static float *cuda_grads(Device *d) { return gpu_model_grads(gpu(d)); }
static float *cuda_params(Device *d) { return gpu_model_params(gpu(d)); }
static void cuda_params_changed(Device *d) { gpu_model_params_changed(gpu(d)); }
static void cuda_own(Device *d, const Span *spans, int n) { gpu_model_own(gpu(d), spans, n); }

static KvCache *cuda_kv_open(Device *d, int rows, int max_len, int max_step, int verbose)
{
    KvCache *kv = (KvCache *)xmalloc(sizeof *kv);
    kv_cache_init(kv, &d->host->cfg, rows, max_len, max_step);
    gpu_model_kv_open(gpu(d), kv, verbose);
    return kv;
}
static void cuda_kv_close(Device *d, KvCache *kv)
{
    gpu_model_kv_free(gpu(d), kv);
    kv_cache_free_host(kv);
    free(kv);
}
static const float *cuda_step(Device *d, KvCache *kv, const uint32_t *tokens, const int *rows, int n, const BalanceOptions *bo)
{
    Model *m = d->host;
    return gpu_model_step(gpu(d), kv, &m->cfg, tokens, rows, n, bo, m->expert_bias);
}

// in DeviceOps's order (C++17 has no designated initializers)
extern "C" const DeviceOps cuda_device_ops = {
    "cuda", cuda_open, cuda_close, cuda_set_state, cuda_get_state, cuda_forward,
    cuda_logits, cuda_backward, cuda_zero_grads, cuda_grad_norm, cuda_adamw, cuda_route_sums,
    cuda_use_local_rank, cuda_grads, cuda_params, cuda_params_changed, cuda_own,
    cuda_kv_open, cuda_kv_close, cuda_step,
};
