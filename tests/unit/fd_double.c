/* The model compiled a second time, with float as double (and plain loops
 * instead of BLAS): the finite-difference side of test_model_fd; see
 * fd_double.h. Nothing is renamed: the build localises every symbol of
 * this object but the fd_* ones. */
#undef SIGMA_BLAS
#define float double
#define expf exp
#define sqrtf sqrt
#define powf pow
#define cosf cos
#define sinf sin
#define logf log
#include "../../lib/model/config.c"
#include "../../lib/model/balance.c"
#include "../../lib/model/layout.c"
#include "../../lib/model/route.c"
#include "../../lib/model/model.c"
#undef float

#include "fd_double.h"

#include <math.h>

static const uint32_t *tokens;
static int B, T, N;

static double dloss(Model *m, const FdCase *c, const double *mask, const double *gc, const double *gt)
{
    BalanceOptions bo = {.kind = (BalanceKind)c->kind, .coef = c->coef, .tau = c->tau, .z_coef = c->z,
                         .global_counts = c->global ? gc : NULL, .global_tokens = c->global ? gt : NULL};
    return model_forward(m, tokens, tokens + 1, c->mask ? mask : NULL, NULL, B, T, &bo).loss;
}

/* A digest of the routing, to see that a perturbation moved no token to another expert. */
static uint64_t routing(const Model *m)
{
    uint64_t h = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < N * m->acts->kused[l]; i++) h = h * 31 + (uint64_t)m->acts->sel[l][i];
    return h;
}

FdResult fd_check_case(const FdCase *c, const uint32_t *toks, int b, int len)
{
    tokens = toks;
    B = b;
    T = len;
    N = b * len;
    Config cfg;
    config_preset(&cfg, "test", 300);
    cfg.top_k[0] = c->k0;
    cfg.top_k[1] = c->k1;
    Model m;
    model_init(&m, &cfg, B, T);
    model_init_params(&m, 7, 0.35);
    for (int i = 0; i < cfg.n_layers * cfg.n_experts; i++) m.expert_bias[i] = c->kind == BALANCE_BIAS ? 0.05 * ((i * 7) % 5 - 2) : 0;
    double *mask = xmalloc((size_t)N * sizeof(double)), gc[2 * 8], gt[2] = {3 * N, 3 * N};
    for (int n = 0; n < N; n++) mask[n] = (n % 3) != 1;
    for (int i = 0; i < 16; i++) gc[i] = (double)((i * 5) % 7 + 1) * 3 * N / 32.0 * (i < 8 ? c->k0 : c->k1);

    model_zero_grads(&m);
    dloss(&m, c, mask, gc, gt);
    uint64_t route0 = routing(&m);
    model_backward(&m, 1.0, 1.0);
    double *g = xmalloc(m.n_params * sizeof(double));
    memcpy(g, m.grads, m.n_params * sizeof(double));

    const double h = 1e-5;
    double worst = 0;
    const char *worst_name = "";
    int flips = 0, checked = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const ParamTensor *t = &m.tensors[ti];
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
    FdResult r = {.worst = worst, .checked = checked, .flips = flips, .n_tensors = m.n_tensors};
    snprintf(r.worst_name, sizeof r.worst_name, "%s", worst_name);
    free(g);
    free(mask);
    model_free(&m);
    return r;
}

double fd_reference(double **params, double **grads, size_t *n, int k0, uint64_t seed, double std, const uint32_t *toks,
                    int b, int t)
{
    Config c;
    config_preset(&c, "test", 300);
    c.top_k[0] = k0;
    Model m;
    model_init(&m, &c, b, t);
    model_init_params(&m, seed, std);
    BalanceOptions bo = {.kind = BALANCE_TOP1_LBL, .coef = 0.01, .tau = 0.1, .z_coef = 0.001};
    model_zero_grads(&m);
    double loss = model_forward(&m, toks, toks + 1, NULL, NULL, b, t, &bo).loss;
    model_backward(&m, 1.0, 1.0);
    *n = m.n_params;
    *params = xmalloc(m.n_params * sizeof(double));
    *grads = xmalloc(m.n_params * sizeof(double));
    memcpy(*params, m.params, m.n_params * sizeof(double));
    memcpy(*grads, m.grads, m.n_params * sizeof(double));
    model_free(&m);
    return loss;
}
