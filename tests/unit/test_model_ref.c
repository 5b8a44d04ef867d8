/* The CPU model against an independent PyTorch implementation (and Hugging
 * Face's Qwen3MoeForCausalLM where the fixture has its logits): logits,
 * losses and every gradient within 1e-4 relative. The fixtures and the
 * script that made them: tests/fixtures/model/, tests/make_model_fixtures.py. */
#include "../tap.h"
#include "../compare.h"
#include "base/base.h"
#include "base/json.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *fixtures(void)
{
    const char *root = getenv("SIGMA_ROOT");
    static char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/model", root ? root : ".");
    return path;
}

static void load_named(const char *path, const char *name, float *out, int rows, int cols)
{
    ParamTensor t = {.offset = 0, .numel = (size_t)rows * (cols ? cols : 1), .ndim = cols ? 2 : 1, .shape = {rows, cols}};
    snprintf(t.name, sizeof t.name, "%s", name);
    safetensors_load(path, &t, 1, out, "", 0);
}

static void check_case(int i)
{
    char *json = xasprintf("%s/case-%d.json", fixtures(), i);
    cJSON *j = json_parse_file(json);
    Config c;
    config_from_json(&c, json_req(j, "config", json), json);
    int B = (int)json_req_u64(j, "B", json), T = (int)json_req_u64(j, "T", json), N = B * T, V = c.vocab_size;
    uint32_t *in = xmalloc((size_t)N * sizeof(uint32_t)), *tg = xmalloc((size_t)N * sizeof(uint32_t));
    float *mask = xmalloc((size_t)N * sizeof(float));
    for (int n = 0; n < N; n++) {
        in[n] = (uint32_t)cJSON_GetArrayItem(json_req(j, "tokens", json), n)->valueint;
        tg[n] = (uint32_t)cJSON_GetArrayItem(json_req(j, "targets", json), n)->valueint;
        mask[n] = (float)cJSON_GetArrayItem(json_req(j, "mask", json), n)->valuedouble;
    }
    const char *bal = json_req_str(j, "balance", json);
    BalanceOptions bo = {.kind = !strcmp(bal, "lbl") ? BALANCE_LBL : !strcmp(bal, "top1-lbl") ? BALANCE_TOP1_LBL : BALANCE_NONE,
                         .coef = (float)json_req_num(j, "coef", json), .tau = (float)json_req_num(j, "tau", json),
                         .z_coef = (float)json_req_num(j, "z", json)};

    Model m;
    model_init(&m, &c, B, T);
    char *path = xasprintf("%s/case-%d.model.safetensors", fixtures(), i);
    safetensors_load(path, m.tensors, m.n_tensors, m.params, "", 0);   /* written by the safetensors library */
    model_zero_grads(&m);
    Losses l = model_forward(&m, in, tg, mask, NULL, B, T, &bo);
    model_backward(&m, 1.0f, 1.0f);

    float *ref = xmalloc((size_t)N * V * sizeof(float)), loss[4];
    free(path);
    path = xasprintf("%s/case-%d.ref.safetensors", fixtures(), i);
    ParamTensor rt[2] = {{.name = "ref.logits", .offset = 0, .numel = (size_t)N * V, .ndim = 2, .shape = {N, V}},
                         {.name = "ref.loss", .offset = (size_t)N * V, .numel = 4, .ndim = 1, .shape = {4, 0}}};
    float *both = xmalloc(((size_t)N * V + 4) * sizeof(float));
    safetensors_load(path, rt, 2, both, "", 0);
    memcpy(ref, both, (size_t)N * V * sizeof(float));
    memcpy(loss, both + (size_t)N * V, sizeof loss);
    free(both);
    const char *name = json_req_str(j, "balance", json);
    ok(rel_max_err(model_logits(&m), ref, (size_t)N * V) < 1e-4, "case %d (%s, top_k %d,%d): logits match PyTorch (%.2g)", i, name,
       c.top_k[0], c.top_k[1], rel_max_err(model_logits(&m), ref, (size_t)N * V));
    float mine[4] = {l.ce, l.balance, l.z, l.loss};
    int losses_ok = 1;
    for (int k = 0; k < 4; k++) losses_ok &= fabs(mine[k] - loss[k]) <= 1e-4 * fabs(loss[k]) + 1e-7;
    ok(losses_ok, "case %d: ce %.6f balance %.6f z %.6f match PyTorch's %.6f %.6f %.6f", i, l.ce, l.balance, l.z, loss[0], loss[1], loss[2]);

    float *g = xmalloc(m.n_params * sizeof(float));
    free(path);
    path = xasprintf("%s/case-%d.grads.safetensors", fixtures(), i);
    safetensors_load(path, m.tensors, m.n_tensors, g, "grad.", 0);
    double worst = 0;
    const char *worst_name = "";
    for (int t = 0; t < m.n_tensors; t++) {
        const ParamTensor *pt = &m.tensors[t];
        double e = rel_max_err(m.grads + pt->offset, g + pt->offset, pt->numel);
        if (e > worst) { worst = e; worst_name = pt->name; }
    }
    ok(worst < 1e-4, "case %d: all %d gradients match PyTorch (worst %.2g, %s)", i, m.n_tensors, worst, worst_name);

    free(path);
    path = xasprintf("%s/case-%d.hf.safetensors", fixtures(), i);
    if (path_exists(path)) {
        load_named(path, "ref.hf_logits", ref, N, V);
        ok(rel_max_err(model_logits(&m), ref, (size_t)N * V) < 1e-4,
           "case %d: logits match Hugging Face Qwen3MoeForCausalLM with our weights (%.2g)", i, rel_max_err(model_logits(&m), ref, (size_t)N * V));
    }
    free(path);
    free(g); free(ref); free(in); free(tg); free(mask); free(json);
    model_free(&m);
    cJSON_Delete(j);
}

int main(void)
{
    sg_init("test_model_ref");
    for (int i = 0;; i++) {
        char *p = xasprintf("%s/case-%d.json", fixtures(), i);
        int have = path_exists(p);
        free(p);
        if (!have) {
            if (i == 0) ok(0, "no fixtures in %s", fixtures());
            break;
        }
        check_case(i);
    }
    return tap_done();
}
