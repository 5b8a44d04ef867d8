/* cuDNN's fused attention reads and writes the model's tensors where they
 * are, through sdpa_plan.h's dimensions and strides: each element (b, h,
 * t, i) of every tensor must be the one the model keeps there (q, out,
 * dout, dq [N, H*hd]; k, dk [N, KV*hd]; v, dv at row stride ldv; the
 * log-sum-exp [B, H, T]), an output must never write one place twice, and
 * the plan cache's keys must tell every field apart. The graphs themselves
 * run only on a GPU (tests/gpu/gpu_check with SIGMA_ATTENTION=cudnn). */
#include "../tap.h"
#include "base/base.h"
#include "cuda/sdpa_plan.h"

#include <stdlib.h>

/* where the model keeps element (b, h, t, i) of tensor `which` */
static int64_t model_offset(int which, const SdpaShape *s, int64_t b, int64_t h, int64_t t, int64_t i)
{
    int64_t tok = b * s->T + t;
    switch (which) {
    case SDPA_Q: case SDPA_O: case SDPA_DO: case SDPA_DQ: return tok * s->H * s->hd + h * s->hd + i;
    case SDPA_K: case SDPA_DK: return tok * s->KV * s->hd + h * s->hd + i;
    case SDPA_V: case SDPA_DV: return tok * s->ldv + h * s->hd + i;
    default: return (b * s->H + h) * s->T + t;   /* SDPA_STATS */
    }
}

static void check_shape(const SdpaShape *s)
{
    SdpaTensor t[SDPA_TENSORS];
    sdpa_tensors(t, s);
    static const char *const names[SDPA_TENSORS] = {"Q", "K", "V", "O", "Stats", "dO", "dQ", "dK", "dV"};
    for (int w = 0; w < SDPA_TENSORS; w++) {
        const int64_t *d = t[w].dim, *st = t[w].stride;
        int heads = w == SDPA_K || w == SDPA_V || w == SDPA_DK || w == SDPA_DV ? s->KV : s->H, width = w == SDPA_STATS ? 1 : s->hd;
        int dims = d[0] == s->B && d[1] == heads && d[2] == s->T && d[3] == width, same = 1, once = 1;
        int64_t span = model_offset(w, s, s->B - 1, heads - 1, s->T - 1, width - 1) + 1;
        unsigned char *seen = xcalloc((size_t)span, 1);
        for (int64_t b = 0; b < d[0]; b++)
            for (int64_t h = 0; h < d[1]; h++)
                for (int64_t x = 0; x < d[2]; x++)
                    for (int64_t i = 0; i < d[3]; i++) {
                        int64_t at = b * st[0] + h * st[1] + x * st[2] + i * st[3];
                        same &= at == model_offset(w, s, b, h, x, i);
                        if (at >= 0 && at < span) once &= !seen[at]++;
                        else once = 0;
                    }
        free(seen);
        ok(dims && same && once, "B %d, T %d, %d/%d heads of %d, ldv %d: %s is the model's tensor, each element once", s->B, s->T, s->H,
           s->KV, s->hd, s->ldv, names[w]);
    }
}

int main(void)
{
    sg_init("test_sdpa_plan");
    const SdpaShape shapes[] = {
        {2, 5, 4, 2, 8, 32},     /* v inside a qkv buffer: (4 + 2 + 2) * 8 */
        {1, 3, 2, 2, 16, 32},    /* no grouping, v alone */
        {3, 4, 6, 1, 8, 64},     /* one KV head for all */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) check_shape(&shapes[i]);

    /* the cache's keys: equal only when every field is, and ordered */
    const SdpaShape a = {8, 2048, 16, 4, 64, 1536};
    int distinct = sdpa_shape_cmp(&a, &a) == 0;
    for (int f = 0; f < 6; f++) {
        SdpaShape b = a;
        int *field[6] = {&b.B, &b.T, &b.H, &b.KV, &b.hd, &b.ldv};
        (*field[f])++;
        distinct &= sdpa_shape_cmp(&a, &b) < 0 && sdpa_shape_cmp(&b, &a) > 0;
    }
    ok(distinct, "plan keys: each of B, T, H, KV, hd and ldv tells shapes apart, in one order");
    return tap_done();
}
