/* Model configuration: presets, JSON, validation, parameter counts. */
#include "model/model.h"
#include "base/base.h"

#include <string.h>

static void set_shape(Config *c, int vocab, int d, int layers, int heads, int kv, int hd, int experts, int de, int seq)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = vocab;
    c->d_model = d;
    c->n_layers = layers;
    c->n_heads = heads;
    c->n_kv_heads = kv;
    c->head_dim = hd;
    c->n_experts = experts;
    c->d_expert = de;
    for (int l = 0; l < layers; l++) c->top_k[l] = 1;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-6f;
    c->tie_embeddings = 0;
    c->max_seq_len = seq;
}

/* The presets keep Sigma-MoE-Tiny's proportions: d_expert = d_model / 2,
 * a quarter as many KV heads as query heads where the size allows, many
 * experts, top-1. */
int config_preset(Config *c, const char *name, int vocab_size)
{
    if (!strcmp(name, "sigma-moe-tiny")) /* the report's model: ~20B total, ~0.5B active */
        set_shape(c, vocab_size ? vocab_size : 200064, 1536, 56, 16, 4, 96, 96, 768, 4096);
    else if (!strcmp(name, "nano"))      /* one GPU: ~1.1B total, ~85M active */
        set_shape(c, vocab_size ? vocab_size : 32768, 1024, 20, 16, 4, 64, 32, 512, 2048);
    else if (!strcmp(name, "micro"))     /* two CPU cores, minutes */
        set_shape(c, vocab_size ? vocab_size : 4096, 128, 4, 4, 2, 32, 16, 64, 512);
    else if (!strcmp(name, "test"))      /* tiny, for tests */
        set_shape(c, vocab_size ? vocab_size : 512, 32, 2, 4, 2, 8, 8, 16, 256);
    else
        return -1;
    return 0;
}

void config_from_json(Config *c, const cJSON *j, const char *what)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = json_req_int(j, "vocab_size", what);
    c->d_model = json_req_int(j, "d_model", what);
    c->n_layers = json_req_int(j, "n_layers", what);
    if (c->n_layers < 1 || c->n_layers > MODEL_MAX_LAYERS)
        die("%s: field 'n_layers' must be 1 to %d, got %d", what, MODEL_MAX_LAYERS, c->n_layers);
    c->n_heads = json_req_int(j, "n_heads", what);
    c->n_kv_heads = json_req_int(j, "n_kv_heads", what);
    c->head_dim = json_req_int(j, "head_dim", what);
    c->n_experts = json_req_int(j, "n_experts", what);
    c->d_expert = json_req_int(j, "d_expert", what);
    const cJSON *k = json_req(j, "top_k", what);
    if (cJSON_IsNumber(k)) {
        int v = json_req_int(j, "top_k", what);
        for (int l = 0; l < c->n_layers; l++) c->top_k[l] = v;
    } else if (cJSON_IsArray(k)) {
        if (cJSON_GetArraySize(k) != c->n_layers)
            die("%s: field 'top_k' has %d values for %d layers", what, cJSON_GetArraySize(k), c->n_layers);
        int l = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, k) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= MODEL_MAX_EXPERTS) || v->valuedouble != (int)v->valuedouble)
                die("%s: field 'top_k' must hold integers from 0 to %d", what, MODEL_MAX_EXPERTS);
            c->top_k[l++] = (int)v->valuedouble;
        }
    } else {
        die("%s: field 'top_k' must be a number or an array of one per layer", what);
    }
    c->rope_theta = (float)json_opt_num(j, "rope_theta", 10000.0, what);
    c->norm_eps = (float)json_opt_num(j, "norm_eps", 1e-6, what);
    c->tie_embeddings = json_opt_bool(j, "tie_embeddings", 0, what);
    c->max_seq_len = json_opt_int(j, "max_seq_len", 2048, what);
}

cJSON *config_to_json(const Config *c)
{
    cJSON *j = json_obj(), *k = json_arr();
    json_add_u64(j, "vocab_size", (uint64_t)c->vocab_size);
    json_add_u64(j, "d_model", (uint64_t)c->d_model);
    json_add_u64(j, "n_layers", (uint64_t)c->n_layers);
    json_add_u64(j, "n_heads", (uint64_t)c->n_heads);
    json_add_u64(j, "n_kv_heads", (uint64_t)c->n_kv_heads);
    json_add_u64(j, "head_dim", (uint64_t)c->head_dim);
    json_add_u64(j, "n_experts", (uint64_t)c->n_experts);
    json_add_u64(j, "d_expert", (uint64_t)c->d_expert);
    for (int l = 0; l < c->n_layers; l++) json_push(k, cJSON_CreateNumber(c->top_k[l]));
    json_add(j, "top_k", k);
    json_add_num(j, "rope_theta", c->rope_theta);
    json_add_num(j, "norm_eps", c->norm_eps);
    json_add_bool(j, "tie_embeddings", c->tie_embeddings);
    json_add_u64(j, "max_seq_len", (uint64_t)c->max_seq_len);
    return j;
}

void config_validate(const Config *c, const char *what)
{
    const struct { const char *name; int v; } pos[] = {
        {"vocab_size", c->vocab_size}, {"d_model", c->d_model}, {"n_layers", c->n_layers}, {"n_heads", c->n_heads},
        {"n_kv_heads", c->n_kv_heads}, {"head_dim", c->head_dim}, {"n_experts", c->n_experts},
        {"d_expert", c->d_expert}, {"max_seq_len", c->max_seq_len}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) die("%s: field '%s' must be positive, got %d", what, pos[i].name, pos[i].v);
    const struct { const char *name; int v, max; } lim[] = {
        {"d_model", c->d_model, MODEL_MAX_DIM}, {"n_heads", c->n_heads, MODEL_MAX_DIM}, {"n_kv_heads", c->n_kv_heads, MODEL_MAX_DIM},
        {"head_dim", c->head_dim, MODEL_MAX_DIM}, {"d_expert", c->d_expert, MODEL_MAX_DIM}, {"max_seq_len", c->max_seq_len, MODEL_MAX_SEQ}};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (lim[i].v > lim[i].max) die("%s: field '%s' is %d, above the limit of %d", what, lim[i].name, lim[i].v, lim[i].max);
    if (c->n_experts > MODEL_MAX_EXPERTS)
        die("%s: field 'n_experts' must be at most %d, got %d", what, MODEL_MAX_EXPERTS, c->n_experts);
    if (c->n_layers > MODEL_MAX_LAYERS) die("%s: field 'n_layers' must be at most %d", what, MODEL_MAX_LAYERS);
    if (c->n_heads % c->n_kv_heads)
        die("%s: field 'n_kv_heads' (%d) must divide n_heads (%d)", what, c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2) die("%s: field 'head_dim' must be even for RoPE, got %d", what, c->head_dim);
    for (int l = 0; l < c->n_layers; l++)
        if (c->top_k[l] < 1 || c->top_k[l] > c->n_experts)
            die("%s: field 'top_k' of layer %d is %d, outside 1..%d (n_experts)", what, l, c->top_k[l], c->n_experts);
    if (!(c->norm_eps > 0)) die("%s: field 'norm_eps' must be positive", what);
    /* the products, each checked: a tensor's rows and elements fit an int and
     * a size, the parameters MODEL_MAX_PARAMS */
    uint64_t qd = (uint64_t)c->n_heads * (uint64_t)c->head_dim, kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    if (qd > INT32_MAX || kvd > INT32_MAX) die("%s: n_heads x head_dim = %llu is too large", what, (unsigned long long)qd);
    /* the count in floating point first (no overflow), so that the exact
     * count of config_count_params stays far below 2^64 */
    double d = c->d_model, hd = c->head_dim, per_layer = d * hd * (2.0 * c->n_heads + 2.0 * c->n_kv_heads) + 2 * hd + 2 * d +
                                                          (double)c->n_experts * d * (1 + 3.0 * c->d_expert);
    double params = (double)c->vocab_size * d * 2 + d + c->n_layers * per_layer;
    if (params > (double)MODEL_MAX_PARAMS)
        die("%s: the model would have %.4g parameters, above the limit of %llu (vocab_size %d, d_model %d, head_dim %d, d_expert %d)",
            what, params, MODEL_MAX_PARAMS, c->vocab_size, c->d_model, c->head_dim, c->d_expert);
    if (!(c->rope_theta > 1)) die("%s: field 'rope_theta' must be above 1", what);
}

/* Active parameters count what a token passes through apart from the
 * embedding and the head, as the Sigma-MoE-Tiny report counts them
 * (0.5B of 20B): attention, norms, router and k experts per layer. */
void config_count_params(const Config *c, uint64_t *total, uint64_t *active)
{
    uint64_t d = (uint64_t)c->d_model, hd = (uint64_t)c->head_dim, E = (uint64_t)c->n_experts, de = (uint64_t)c->d_expert;
    uint64_t attn = d * hd * (uint64_t)(c->n_heads + 2 * c->n_kv_heads) + (uint64_t)c->n_heads * hd * d + 2 * hd;
    uint64_t per_expert = 3 * d * de, layer_fixed = attn + 2 * d + E * d;
    uint64_t emb = (uint64_t)c->vocab_size * d * (c->tie_embeddings ? 1 : 2);
    *total = emb + d;
    *active = 0;
    for (int l = 0; l < c->n_layers; l++) {
        *total += layer_fixed + E * per_expert;
        *active += layer_fixed + (uint64_t)c->top_k[l] * per_expert;
    }
}

double config_train_flops(const Config *c, int T)
{
    uint64_t total, active;
    config_count_params(c, &total, &active);
    return 6.0 * ((double)active + (double)c->vocab_size * c->d_model) +
           6.0 * c->n_layers * c->n_heads * c->head_dim * (double)T;
}
