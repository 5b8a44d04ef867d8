/* The model's gradients against central finite differences in double
 * precision: model.c and config.c are compiled here a second time with
 * float as double (and plain loops instead of BLAS), so the differences are
 * taken on a double-precision forward. Every parameter tensor is checked
 * (its gradient direction and a few single elements), with each balance
 * term, the loss mask, top-1 and top-2 layers, global expert counts and
 * the routing bias. Then the fp32 model (the one every tool links) is
 * checked against the double one. Random weights, real text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "../tap.h"
#include "base/base.h"
#include "base/json.h"

#undef SIGMA_BLAS
#define float double
#define expf exp
#define sqrtf sqrt
#define powf pow
#define cosf cos
#define sinf sin
#define logf log
#define model_init d_model_init
#define model_free d_model_free
#define model_init_params d_model_init_params
#define model_tensor d_model_tensor
#define model_forward d_model_forward
#define model_backward d_model_backward
#define model_zero_grads d_model_zero_grads
#define model_logits d_model_logits
#define model_route_stats d_model_route_stats
#define model_update_bias d_model_update_bias
#define model_selection d_model_selection
#define route_sort d_route_sort
#define route_sort_tokens d_route_sort_tokens
#define config_preset d_config_preset
#define config_from_json d_config_from_json
#define config_to_json d_config_to_json
#define config_validate d_config_validate
#define config_count_params d_config_count_params
#define config_train_flops d_config_train_flops
#define safetensors_save d_safetensors_save
#define safetensors_load d_safetensors_load
#define Model DModel
#define Config DConfig
#define Losses DLosses
#define BalanceOptions DBalanceOptions
#define ParamTensor DParamTensor
#define Activations DActivations
#define BalanceLoss DBalanceLoss
#define BALANCE_NONE D_BALANCE_NONE
#define BALANCE_LBL D_BALANCE_LBL
#define BALANCE_TOP1_LBL D_BALANCE_TOP1_LBL
#include "../../lib/model/config.c"
#include "../../lib/model/route.c"
#include "../../lib/model/model.c"
#undef float
#undef expf
#undef sqrtf
#undef powf
#undef cosf
#undef sinf
#undef logf
#undef model_init
#undef model_free
#undef model_init_params
#undef model_tensor
#undef model_forward
#undef model_backward
#undef model_zero_grads
#undef model_logits
#undef model_route_stats
#undef model_update_bias
#undef model_selection
#undef route_sort
#undef route_sort_tokens
#undef config_preset
#undef config_from_json
#undef config_to_json
#undef config_validate
#undef config_count_params
#undef config_train_flops
#undef safetensors_save
#undef safetensors_load
#undef Model
#undef Config
#undef Losses
#undef BalanceOptions
#undef ParamTensor
#undef Activations
#undef BalanceLoss
#undef BALANCE_NONE
#undef BALANCE_LBL
#undef BALANCE_TOP1_LBL
#undef SIGMA_MODEL_H
#include "model/model.h"   /* now the fp32 model of libsigma */

/* ---- the test ------------------------------------------------------------- */

enum { B = 2, T = 8, N = B * T };
static uint32_t tokens[N + 1];

static int load_text(void)
{
    const char *env = getenv("SIGMA_DATA");
    char *p = env ? xasprintf("%s/corpora/tinyshakespeare.txt", env) : NULL;
    const char *path = p && path_exists(p) ? p : "/usr/share/common-licenses/GPL-3";
    if (!path_exists(path)) { free(p); return 0; }
    size_t len;
    char *text = read_file(path, &len);
    for (int i = 0; i <= N; i++) tokens[i] = (uint8_t)text[1000 + i];
    free(text);
    diag("real text from %s", path);
    free(p);
    return 1;
}

typedef struct {
    const char *name;
    int k0, k1;                /* top-k of layers 0 and 1 */
    DBalanceLoss kind;
    double coef, tau, z;
    int global, mask, bias;
} Case;

static double dloss(DModel *m, const Case *c, const double *mask, const double *gc, const double *gt)
{
    DBalanceOptions bo = {.kind = c->kind, .coef = c->coef, .tau = c->tau, .z_coef = c->z, .use_bias = c->bias,
                          .global_counts = c->global ? gc : NULL, .global_tokens = c->global ? gt : NULL};
    return d_model_forward(m, tokens, tokens + 1, c->mask ? mask : NULL, B, T, &bo).loss;
}

/* A digest of the routing, to see that a perturbation moved no token to another expert. */
static uint64_t routing(const DModel *m)
{
    uint64_t h = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < N * m->acts->kused[l]; i++) h = h * 31 + (uint64_t)m->acts->sel[l][i];
    return h;
}

static void check_case(const Case *c)
{
    DConfig cfg;
    d_config_preset(&cfg, "test", 300);
    cfg.top_k[0] = c->k0;
    cfg.top_k[1] = c->k1;
    DModel m;
    d_model_init(&m, &cfg, B, T);
    d_model_init_params(&m, 7, 0.35);
    for (int i = 0; i < cfg.n_layers * cfg.n_experts; i++) m.expert_bias[i] = c->bias ? 0.05 * ((i * 7) % 5 - 2) : 0;
    double mask[N], gc[2 * 8], gt[2] = {3 * N, 3 * N};
    for (int n = 0; n < N; n++) mask[n] = (n % 3) != 1;
    for (int i = 0; i < 16; i++) gc[i] = (double)((i * 5) % 7 + 1) * 3 * N / 32.0 * (i < 8 ? c->k0 : c->k1);

    d_model_zero_grads(&m);
    dloss(&m, c, mask, gc, gt);
    uint64_t route0 = routing(&m);
    d_model_backward(&m, 1.0);
    double *g = xmalloc(m.n_params * sizeof(double));
    memcpy(g, m.grads, m.n_params * sizeof(double));

    const double h = 1e-5;
    double worst = 0;
    const char *worst_name = "";
    int flips = 0, checked = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const DParamTensor *t = &m.tensors[ti];
        double *w = m.params + t->offset, *gw = g + t->offset, norm = 0;
        for (size_t i = 0; i < t->numel; i++) norm += gw[i] * gw[i];
        norm = sqrt(norm);
        /* the gradient direction: L(w + h g/|g|) - L(w - h g/|g|) over 2h should be |g| */
        if (norm > 1e-12) {
            for (size_t i = 0; i < t->numel; i++) w[i] += h * gw[i] / norm;
            double lp = dloss(&m, c, mask, gc, gt);
            int same = routing(&m) == route0;
            for (size_t i = 0; i < t->numel; i++) w[i] -= 2 * h * gw[i] / norm;
            double lm = dloss(&m, c, mask, gc, gt);
            same &= routing(&m) == route0;
            for (size_t i = 0; i < t->numel; i++) w[i] += h * gw[i] / norm;
            if (!same) { flips++; continue; }
            double fd = (lp - lm) / (2 * h), err = fabs(fd - norm) / (norm + 1e-8);
            if (err > worst) { worst = err; worst_name = t->name; }
            checked++;
        }
        /* three single elements: the largest gradient and two others */
        size_t pick[3] = {0, t->numel / 3, t->numel - 1};
        for (size_t i = 0; i < t->numel; i++) if (fabs(gw[i]) > fabs(gw[pick[0]])) pick[0] = i;
        for (int j = 0; j < 3; j++) {
            size_t i = pick[j];
            double old = w[i];
            w[i] = old + h;
            double lp = dloss(&m, c, mask, gc, gt);
            int same = routing(&m) == route0;
            w[i] = old - h;
            double lm = dloss(&m, c, mask, gc, gt);
            same &= routing(&m) == route0;
            w[i] = old;
            if (!same) { flips++; continue; }
            double fd = (lp - lm) / (2 * h), err = fabs(fd - gw[i]) / (fabs(gw[i]) + 1e-6);
            if (err > worst) { worst = err; worst_name = t->name; }
            checked++;
        }
    }
    ok(worst < 1e-4 && checked > 3 * m.n_tensors, "%s: %d finite differences over %d tensors, worst relative error %.2g (%s)%s",
       c->name, checked, m.n_tensors, worst, worst_name, flips ? " (some perturbations changed the routing and were left out)" : "");
    free(g);
    d_model_free(&m);
}

/* The fp32 model against the double one: same weights, same loss and grads. */
static void check_fp32(void)
{
    DConfig dc;
    d_config_preset(&dc, "test", 300);
    dc.top_k[0] = 2;
    DModel dm;
    d_model_init(&dm, &dc, B, T);
    d_model_init_params(&dm, 11, 0.3);
    Config fc;
    config_preset(&fc, "test", 300);
    fc.top_k[0] = 2;
    Model fm;
    model_init(&fm, &fc, B, T);
    ok(fm.n_params == dm.n_params && fm.n_tensors == dm.n_tensors, "fp32 and double models have the same layout");
    for (size_t i = 0; i < fm.n_params; i++) fm.params[i] = (float)dm.params[i];
    DBalanceOptions dbo = {.kind = D_BALANCE_TOP1_LBL, .coef = 0.01, .tau = 0.1, .z_coef = 0.001};
    BalanceOptions fbo = {.kind = BALANCE_TOP1_LBL, .coef = 0.01f, .tau = 0.1f, .z_coef = 0.001f};
    d_model_zero_grads(&dm);
    model_zero_grads(&fm);
    double dl = d_model_forward(&dm, tokens, tokens + 1, NULL, B, T, &dbo).loss;
    float fl = model_forward(&fm, tokens, tokens + 1, NULL, B, T, &fbo).loss;
    d_model_backward(&dm, 1.0);
    model_backward(&fm, 1.0f);
    double gn = 0, diff = 0;
    for (size_t i = 0; i < fm.n_params; i++) {
        gn += dm.grads[i] * dm.grads[i];
        diff += (fm.grads[i] - dm.grads[i]) * (fm.grads[i] - dm.grads[i]);
    }
    ok(fabs(fl - dl) < 1e-5 * fabs(dl), "fp32 loss %.7f matches double %.7f", fl, dl);
    ok(sqrt(diff / gn) < 1e-4, "fp32 gradients match double (relative L2 error %.2g)", sqrt(diff / gn));
    model_free(&fm);
    d_model_free(&dm);
}

int main(void)
{
    sg_init("test_model_fd");
    if (!load_text()) {
        ok(1, "# SKIP no real text (GPL-3 or tinyshakespeare) on this machine");
        return tap_done();
    }
    omp_set_num_threads(1);
    const Case cases[] = {
        {"top-1, standard LBL, z-loss", 1, 1, D_BALANCE_LBL, 0.05, 0.1, 0.01, 0, 0, 0},
        {"top-2 then top-1, top-1 LBL, loss mask", 2, 1, D_BALANCE_TOP1_LBL, 0.05, 0.1, 0, 0, 1, 0},
        {"top-2, LBL over global counts", 2, 2, D_BALANCE_LBL, 0.05, 0.1, 0, 1, 0, 0},
        {"top-1, no balance, routing bias", 1, 1, D_BALANCE_NONE, 0, 0.1, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    check_fp32();
    return tap_done();
}
