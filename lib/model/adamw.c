/* AdamW and the gradient norm; see adamw.h. */
#include "model/adamw.h"

#include <math.h>

void adamw_update(float *param, float *m, float *v, const float *grad, size_t n, const AdamWStep *s, int decay)
{
    const float b1 = s->beta1, b2 = s->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)s->t));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)s->t));
    const float wd = decay ? s->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * s->grad_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float mhat = m[i] * c1, vhat = v[i] * c2;
        param[i] -= s->lr * (mhat / (sqrtf(vhat) + s->eps) + wd * param[i]);
    }
}

#define NORM_BLOCK 4096

double l2_norm(const float *g, size_t n)
{
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    double total = 0;
    /* Blocks of fixed size summed in parallel, then their sums in order: the
     * same bits for any thread count. */
#pragma omp parallel for schedule(static) ordered
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
#pragma omp ordered
        total += s;
    }
    return sqrt(total);
}

float clip_scale(double norm, double max_norm)
{
    if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
    return (float)(max_norm / norm);
}
