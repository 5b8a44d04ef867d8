/* AdamW with decoupled weight decay, global gradient-norm clipping, and the
 * checks that keep a run stable. Deterministic: sums over blocks of fixed
 * size, added in a fixed order, whatever the number of threads. */
#ifndef SIGMA_ADAMW_H
#define SIGMA_ADAMW_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lr;                  /* this step's learning rate */
    float beta1, beta2, eps;
    float weight_decay;        /* applied to tensors whose decay flag is set */
    float grad_scale;          /* multiplies every gradient (clipping) */
    uint64_t t;                /* step, counting from 1 (bias correction) */
} AdamWStep;

/* param[n] -= lr * (mhat / (sqrt(vhat) + eps) + wd * param), with
 * m[n], v[n] the moments updated from grad[n] * grad_scale. */
void adamw_update(float *param, float *m, float *v, const float *grad, size_t n, const AdamWStep *s, int decay);

/* The L2 norm of g[n] in double precision; NaN or Inf propagate. */
double l2_norm(const float *g, size_t n);
/* The scale that brings a norm down to max_norm (1 when below or max_norm <= 0). */
float clip_scale(double norm, double max_norm);

#endif
