/* Supervised fine-tuning's loss on the CPU model against an independent
 * PyTorch computation: chat conversations packed two to a row (positions
 * restarting at each, so block-diagonal causal attention and RoPE at each
 * token's place in its conversation), an assistant-only loss mask, padding
 * masked; GQA, eight experts, top-2 and top-1 layers, no balance loss. The
 * masked mean cross-entropy, the logits and every parameter's gradient,
 * each tensor within REL of PyTorch's (float64 from the same fp32 weights),
 * relative to the tensor's largest value: fp32 rounding, with room above
 * the largest differences seen, 1.6e-6 (OpenBLAS, 1 or 2 threads) and
 * 2.4e-6 (own loops, one thread), both in a gradient. The fixture and the
 * script that made it: tests/fixtures/sft/, tests/make_sft_fixtures.py. */
#include "../tap.h"
#include "../compare.h"
#include "base/base.h"
#include "base/json.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REL 2e-5

static char *fixture(const char *name)
{
    const char *root = getenv("SIGMA_ROOT");
    return xasprintf("%s/tests/fixtures/sft/%s", root ? root : ".", name);
}

/* The n numbers of the array KEY, one by one, through set(i, value). */
static void read_array(const cJSON *j, const char *key, int n, const char *what, void (*set)(void *, int, double), void *out)
{
    const cJSON *a = json_req(j, key, what), *v;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) die("%s: field '%s' must be an array of %d numbers", what, key, n);
    int i = 0;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v)) die("%s: field '%s': item %d is not a number", what, key, i);
        set(out, i++, v->valuedouble);
    }
}
static void set_u32(void *p, int i, double v) { ((uint32_t *)p)[i] = (uint32_t)v; }
static void set_int(void *p, int i, double v) { ((int *)p)[i] = (int)v; }
static void set_float(void *p, int i, double v) { ((float *)p)[i] = (float)v; }

/* The one backward of the test: the gradient of the loss of the last
 * forward, into m->grads. */
static void backward(Model *m) { model_backward(m, 1.0f, 0.0f);   /* no balance loss here */ }

int main(void)
{
    sg_init("test_model_sft_ref");
    char *json = fixture("packed.json");
    cJSON *j = json_parse_file(json);
    Config c;
    config_from_json(&c, json_req(j, "config", json), json);
    int B = json_req_int(j, "B", json), T = json_req_int(j, "T", json), N = B * T, V = c.vocab_size;
    uint32_t *in = xmalloc((size_t)N * sizeof *in), *tg = xmalloc((size_t)N * sizeof *tg);
    float *mask = xmalloc((size_t)N * sizeof *mask);
    int *pos = xmalloc((size_t)N * sizeof *pos);
    read_array(j, "tokens", N, json, set_u32, in);
    read_array(j, "targets", N, json, set_u32, tg);
    read_array(j, "mask", N, json, set_float, mask);
    read_array(j, "pos", N, json, set_int, pos);
    if (strcmp(json_req_str(j, "balance", json), "none")) die("%s: field 'balance': this test compares the loss alone", json);
    BalanceOptions bo = {.kind = BALANCE_NONE};

    int docs = 0, learned = 0;
    for (int n = 0; n < N; n++) docs += pos[n] == 0, learned += mask[n] != 0;
    Model m;
    model_init(&m, &c, B, T);
    char *path = fixture("packed.model.safetensors");
    safetensors_load(path, m.tensors, m.n_tensors, m.params, "", 0);
    free(path);
    model_zero_grads(&m);
    Losses l = model_forward(&m, in, tg, mask, pos, B, T, &bo);
    backward(&m);

    float *ref = xmalloc(((size_t)N * V + 1) * sizeof(float));
    ParamTensor rt[2] = {{.name = "ref.logits", .offset = 0, .numel = (size_t)N * V, .ndim = 2, .shape = {N, V}},
                         {.name = "ref.loss", .offset = (size_t)N * V, .numel = 1, .ndim = 1, .shape = {1, 0}}};
    path = fixture("packed.ref.safetensors");
    safetensors_load(path, rt, 2, ref, "", 0);
    free(path);
    float ce = ref[(size_t)N * V];
    double e = rel_max_err(model_logits(&m), ref, (size_t)N * V);
    ok(e < REL, "%d rows of %d, %d documents (padding among them), %d of %d targets learned: logits match PyTorch (%.2g)", B, T,
       docs, learned, N, e);
    ok(fabs(l.ce - ce) <= REL * fabs(ce), "masked mean cross-entropy %.7f matches PyTorch's %.7f (%.2g)", l.ce, ce,
       fabs(l.ce - ce) / fabs(ce));

    float *g = xmalloc(m.n_params * sizeof(float));
    path = fixture("packed.grads.safetensors");
    safetensors_load(path, m.tensors, m.n_tensors, g, "grad.", 0);
    free(path);
    double worst = 0;
    const char *worst_name = "";
    int zero = 0;
    for (int t = 0; t < m.n_tensors; t++) {
        const ParamTensor *pt = &m.tensors[t];
        double te = rel_max_err(m.grads + pt->offset, g + pt->offset, pt->numel);
        if (te > worst) { worst = te; worst_name = pt->name; }
        int any = 0;
        for (size_t i = 0; i < pt->numel && !any; i++) any = g[pt->offset + i] != 0;
        zero += !any;
    }
    ok(worst < REL, "all %d gradients match PyTorch's (worst %.2g, %s; %d tensors with no gradient, experts no token chose)",
       m.n_tensors, worst, worst_name, zero);

    /* the fixture tells packing and masking apart: without them the loss is another */
    Losses unpacked = model_forward(&m, in, tg, mask, NULL, B, T, &bo);
    Losses unmasked = model_forward(&m, in, tg, NULL, pos, B, T, &bo);
    ok(fabs(unpacked.ce - ce) > 10 * REL * fabs(ce) && fabs(unmasked.ce - ce) > 10 * REL * fabs(ce),
       "a row attending across its conversations gives %.5f, every target learned %.5f", unpacked.ce, unmasked.ce);

    free(g);
    free(ref);
    free(in);
    free(tg);
    free(mask);
    free(pos);
    free(json);
    model_free(&m);
    cJSON_Delete(j);
    return tap_done();
}
