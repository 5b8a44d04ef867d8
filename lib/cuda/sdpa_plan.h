/* cuDNN's fused attention (cudnn_attention.cu) over the model's own
 * layouts, as plain C that the host's unit tests compile too: the
 * dimensions and strides of each tensor of cuDNN's scaled dot-product
 * attention graph, and the key its execution plans are cached under.
 *
 * cuDNN names a tensor by dimensions (b, h, s, d) and a stride for each;
 * the model keeps q, out, dout and dq as [N, H*hd] (token-major, heads side
 * by side: b, t, h, i), k and dk as [N, KV*hd], v and dv inside the qkv
 * buffer, ldv elements from one token to the next (attention.cuh), and
 * each row's log-sum-exp as [B, H, T]. So no tensor is copied or permuted:
 * the strides say where each element already is. K and V have KV heads,
 * which cuDNN shares among each group of H / KV query heads (grouped-query
 * attention); it sums dK and dV over the group itself. */
#ifndef SIGMA_SDPA_PLAN_H
#define SIGMA_SDPA_PLAN_H

#include <stdint.h>

enum { SDPA_Q, SDPA_K, SDPA_V, SDPA_O, SDPA_STATS, SDPA_DO, SDPA_DQ, SDPA_DK, SDPA_DV, SDPA_TENSORS };

/* What a plan is built for: a forward and a backward plan for each. */
typedef struct {
    int B, T, H, KV, hd, ldv;
} SdpaShape;

typedef struct {
    int64_t dim[4], stride[4];   /* b, h, s, d */
} SdpaTensor;

/* t[SDPA_TENSORS]: each tensor of shape s where the model keeps it. */
static inline void sdpa_tensors(SdpaTensor *t, const SdpaShape *s)
{
    int64_t T = s->T, H = s->H, KV = s->KV, hd = s->hd, qd = H * hd, kvd = KV * hd, ldv = s->ldv;
    SdpaTensor q = {{s->B, H, T, hd}, {T * qd, hd, qd, 1}};
    SdpaTensor k = {{s->B, KV, T, hd}, {T * kvd, hd, kvd, 1}};
    SdpaTensor v = {{s->B, KV, T, hd}, {T * ldv, hd, ldv, 1}};
    SdpaTensor stats = {{s->B, H, T, 1}, {H * T, T, 1, 1}};   /* fp32: the log-sum-exp of each row's scaled scores */
    t[SDPA_Q] = t[SDPA_O] = t[SDPA_DO] = t[SDPA_DQ] = q;
    t[SDPA_K] = t[SDPA_DK] = k;
    t[SDPA_V] = t[SDPA_DV] = v;
    t[SDPA_STATS] = stats;
}

/* The plan cache's order of keys (a total order: equal keys share plans). */
static inline int sdpa_shape_cmp(const SdpaShape *a, const SdpaShape *b)
{
    const int x[6] = {a->B, a->T, a->H, a->KV, a->hd, a->ldv}, y[6] = {b->B, b->T, b->H, b->KV, b->hd, b->ldv};
    for (int i = 0; i < 6; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

#endif
