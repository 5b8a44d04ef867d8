/* Load balancing's arithmetic, shared by the CPU model, the CUDA core and
 * the trainer; see balance.h. Each expression is written in the order both
 * devices used before it was shared, so that their bits did not move. */
#include "model/balance.h"

#include <math.h>
#include <string.h>

static const char *const balance_names[] = {"none", "lbl", "lbl-global", "top1-lbl", "bias"};

int balance_kind_parse(const char *name, BalanceKind *kind)
{
    for (int i = 0; i < (int)(sizeof balance_names / sizeof *balance_names); i++)
        if (!strcmp(name, balance_names[i])) { *kind = (BalanceKind)i; return 0; }
    return -1;
}

const char *balance_kind_name(BalanceKind kind) { return balance_names[kind]; }

double lbl_fraction(const BalanceOptions *bo, const float *counts, int l, int e, int N, int k, int E)
{
    return bo->global_counts ? bo->global_counts[(size_t)l * E + e] / ((double)bo->global_tokens[l] * k)
                             : counts[e] / ((double)N * k);
}

double lbl_loss(const BalanceOptions *bo, const float *counts, const double *sum_p, int l, int N, int k, int E)
{
    double sum = 0;
    for (int e = 0; e < E; e++) sum += lbl_fraction(bo, counts, l, e, N, k, E) * sum_p[e] / N;
    return bo->coef * E * sum;
}

double lbl_grad(const BalanceOptions *bo, const float *counts, int l, int e, int N, int k, int E, float scale)
{
    return scale * bo->coef * E * lbl_fraction(bo, counts, l, e, N, k, E) / N;
}

static double sum_squares(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

double top1_lbl_loss(const BalanceOptions *bo, const double *fhat, double pbar, int E)
{
    return bo->coef * E * sum_squares(fhat, E) / pbar;
}

double top1_lbl_grads(double *gf, const BalanceOptions *bo, const double *fhat, double pbar, int E, float scale)
{
    double c = scale * bo->coef * E, S = sum_squares(fhat, E);
    for (int e = 0; e < E; e++) gf[e] = c * 2 * fhat[e] / pbar;
    return -c * S / (pbar * pbar);
}

double z_loss(const BalanceOptions *bo, double sum_lse2, int N) { return bo->z_coef * sum_lse2 / N; }

void bias_update(float *bias, const float *counts, int E, float rate)
{
    float mean = 0;
    for (int e = 0; e < E; e++) mean += counts[e] / E;
    for (int e = 0; e < E; e++) {
        float s = counts[e] < mean ? 1.0f : counts[e] > mean ? -1.0f : 0.0f;
        bias[e] += rate * s;
    }
}

void load_deviation(const float *counts, int E, double *max_dev, double *min_dev)
{
    double total = 0, hi = counts[0], lo = counts[0];
    for (int e = 0; e < E; e++) {
        total += counts[e];
        hi = counts[e] > hi ? counts[e] : hi;
        lo = counts[e] < lo ? counts[e] : lo;
    }
    double mean = total / E;
    *max_dev = mean > 0 ? (hi - mean) / mean : 0;
    *min_dev = mean > 0 ? (lo - mean) / mean : 0;
}

double load_entropy(const float *counts, int E)
{
    double total = 0, h = 0;
    for (int e = 0; e < E; e++) total += counts[e];
    for (int e = 0; e < E; e++)
        if (counts[e] > 0) h -= counts[e] / total * log(counts[e] / total);
    return h;
}

int idle_experts(const float *counts, int E)
{
    int n = 0;
    for (int e = 0; e < E; e++) n += counts[e] == 0;
    return n;
}
