/* A checkpoint's files, written and read in one place; see ckpt.h. Apart
 * from ckpt.c so that the run-directory code links without the model. */
#include "train/ckpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ckpt_write_config(const AtomicDir *ad, const Config *c, const TokHeader *tok, cJSON *sections)
{
    cJSON *cfg = json_obj(), *tj = json_obj();
    char fp[33];
    fingerprint_hex(fp, tok->fingerprint);
    json_add(cfg, "model", config_to_json(c));
    json_add_str(tj, "fingerprint", fp);
    json_add_u64(tj, "vocab_size", tok->vocab_size);
    json_add(cfg, "tokenizer", tj);
    if (sections) {
        for (cJSON *s = sections->child; s;) {
            cJSON *next = s->next;
            cJSON_AddItemToObject(cfg, s->string, cJSON_DetachItemViaPointer(sections, s));
            s = next;
        }
        cJSON_Delete(sections);
    }
    char *path = atomic_dir_file(ad, "config.json");
    json_write_file_atomic(path, cfg);
    free(path);
    cJSON_Delete(cfg);
}

uint64_t ckpt_write_tensors(const AtomicDir *ad, const char *name, const ParamTensor *t, int n, const float *base)
{
    char *path = atomic_dir_file(ad, name);
    safetensors_save(path, t, n, base, "");
    uint64_t h = file_hash64(path);
    free(path);
    return h;
}

uint64_t ckpt_write_tensors_from(const AtomicDir *ad, const char *name, const ParamTensor *t, int n, TensorSource get, void *ctx)
{
    char *path = atomic_dir_file(ad, name);
    safetensors_save_from(path, t, n, get, ctx, "");
    uint64_t h = file_hash64(path);
    free(path);
    return h;
}

cJSON *ckpt_read_config(const char *dir, Config *c, TokHeader *tok)
{
    char *path = dir_member(dir, "config.json", dir);
    cJSON *cfg = json_parse_file(path);
    config_from_json(c, json_req(cfg, "model", path), path);
    config_validate(c, path);
    const cJSON *tj = json_req(cfg, "tokenizer", path);
    if (!fingerprint_parse(tok->fingerprint, json_req_str(tj, "fingerprint", path)))
        die("%s: tokenizer.fingerprint must be 32 hex digits", path);
    uint64_t v = json_req_u64(tj, "vocab_size", path);
    if (v > (uint64_t)c->vocab_size) die("%s: tokenizer.vocab_size %llu is above the model's %d", path, (unsigned long long)v, c->vocab_size);
    tok->vocab_size = (uint32_t)v;
    free(path);
    return cfg;
}

void ckpt_read_tensors(const char *dir, const char *name, const ParamTensor *t, int n, float *base, uint64_t want_hash, int some)
{
    char *path = dir_member(dir, name, dir);
    if (want_hash && file_hash64(path) != want_hash) die("%s: checksum mismatch: the checkpoint is corrupt", path);
    safetensors_load(path, t, n, base, "", some);
    free(path);
}

void ckpt_write_state(const AtomicDir *ad, const TrainerState *st)
{
    cJSON *j = json_obj(), *pos = json_obj(), *hist = json_arr(), *bias = json_arr();
    json_add_u64(j, "version", TRAINER_STATE_VERSION);
    json_add_hex64(j, "model_xxh3", st->model_xxh3);
    json_add_hex64(j, "optimizer_xxh3", st->optimizer_xxh3);
    json_add_u64(j, "step", st->step);
    json_add_u64(j, "tokens_seen", st->tokens_seen);
    json_add_u64(j, "skipped", st->skipped);
    json_add_u64(pos, "epoch", st->epoch);
    json_add_u64(pos, "group", st->group);
    json_add_u64(pos, "index", st->index);
    json_add(j, "data_position", pos);
    json_add_u64(j, "loss_history_count", st->n_hist);
    for (int i = 0; i < CKPT_LOSS_WINDOW; i++) json_push(hist, json_number(st->loss_hist[i]));
    json_add(j, "loss_history", hist);
    for (size_t i = 0; i < st->n_bias; i++) json_push(bias, cJSON_CreateNumber(st->expert_bias[i]));
    json_add(j, "expert_bias", bias);
    char *path = atomic_dir_file(ad, "trainer.json");
    json_write_file_sealed(path, j);
    free(path);
    cJSON_Delete(j);
}

/* An array of n finite numbers of magnitude at most max. */
static const cJSON *finite_array(const cJSON *j, const char *key, size_t n, double max, const char *what)
{
    const cJSON *a = json_req(j, key, what);
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n) die("%s: field '%s' must be an array of %zu numbers", what, key, n);
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > max)
            die("%s: field '%s': item %zu is not a number within [-%g, %g]", what, key, i, max, max);
        i++;
    }
    return a;
}

void ckpt_read_state(const char *dir, TrainerState *st, const StateLimits *lim)
{
    char *path = dir_member(dir, "trainer.json", dir);
    int sealed;
    cJSON *j = json_parse_file_sealed(path, &sealed);
    uint64_t version = json_opt_u64(j, "version", 1, path);
    if (version < 1 || version > TRAINER_STATE_VERSION)
        die("%s: field 'version' is %llu, this sigma reads 1 to %d", path, (unsigned long long)version, TRAINER_STATE_VERSION);
    if (version >= 2 && !sealed) die("%s: field 'xxh3' is missing (version %llu files carry a checksum)", path, (unsigned long long)version);
    float *bias = st->expert_bias;
    memset(st, 0, sizeof *st);
    st->expert_bias = bias;
    st->n_bias = lim->n_bias;
    st->model_xxh3 = json_req_hex64(j, "model_xxh3", path);
    st->optimizer_xxh3 = json_req_hex64(j, "optimizer_xxh3", path);
    st->step = json_req_u64(j, "step", path);
    st->tokens_seen = json_req_u64(j, "tokens_seen", path);
    st->skipped = json_req_u64(j, "skipped", path);
    uint64_t tokens, seqs;
    if (!mul_u64(st->step, lim->tokens_per_step, &tokens) || tokens > (1ull << 53))
        die("%s: field 'step' is %llu: steps of %llu tokens would overflow tokens_seen", path, (unsigned long long)st->step,
            (unsigned long long)lim->tokens_per_step);
    if (tokens != st->tokens_seen)
        die("%s: field 'tokens_seen' is %llu, but %llu steps of %llu tokens make %llu", path, (unsigned long long)st->tokens_seen,
            (unsigned long long)st->step, (unsigned long long)lim->tokens_per_step, (unsigned long long)tokens);
    if (st->skipped > st->step)
        die("%s: field 'skipped' is %llu, more than the %llu steps", path, (unsigned long long)st->skipped, (unsigned long long)st->step);
    const cJSON *pos = json_req(j, "data_position", path);
    char *pwhat = xasprintf("%s: data_position", path);
    st->epoch = json_req_u64(pos, "epoch", pwhat);
    st->group = json_req_u64(pos, "group", pwhat);
    st->index = json_req_u64(pos, "index", pwhat);
    /* the loader takes seqs_per_step sequences a step, an epoch at a time */
    seqs = st->step * lim->seqs_per_step;   /* within tokens, which did not overflow */
    if (lim->n_sequences && st->epoch > seqs / lim->n_sequences)
        die("%s: field 'epoch' is %llu, but %llu steps read %llu sequences, %llu an epoch", pwhat, (unsigned long long)st->epoch,
            (unsigned long long)st->step, (unsigned long long)seqs, (unsigned long long)lim->n_sequences);
    if (st->group >= lim->n_groups)
        die("%s: field 'group' is %llu, the training split has %llu groups of shards", pwhat, (unsigned long long)st->group,
            (unsigned long long)lim->n_groups);
    if (st->index > lim->n_sequences)
        die("%s: field 'index' is %llu, the training split has %llu sequences", pwhat, (unsigned long long)st->index,
            (unsigned long long)lim->n_sequences);
    free(pwhat);
    st->n_hist = json_req_u64(j, "loss_history_count", path);
    if (st->n_hist > st->step - st->skipped)
        die("%s: field 'loss_history_count' is %llu, more than the %llu steps taken", path, (unsigned long long)st->n_hist,
            (unsigned long long)(st->step - st->skipped));
    const cJSON *hist = finite_array(j, "loss_history", CKPT_LOSS_WINDOW, 1e30, path), *v;
    int i = 0;
    cJSON_ArrayForEach(v, hist) st->loss_hist[i++] = v->valuedouble;
    /* a bias moves by bias_rate a step at most */
    const cJSON *bias_j = finite_array(j, "expert_bias", lim->n_bias, 2 * lim->bias_rate * (double)st->step + 1e-6, path);
    size_t k = 0;
    cJSON_ArrayForEach(v, bias_j) st->expert_bias[k++] = (float)v->valuedouble;
    cJSON_Delete(j);
    free(path);
}

uint64_t ckpt_model_hash(const char *dir)
{
    char *path = xasprintf("%s/trainer.json", dir);
    uint64_t h = 0;
    if (path_exists(path)) {
        free(path);
        path = dir_member(dir, "trainer.json", dir);
        int sealed;
        cJSON *st = json_parse_file_sealed(path, &sealed);
        h = json_req_hex64(st, "model_xxh3", path);
        cJSON_Delete(st);
    }
    free(path);
    return h;
}

int ckpt_read_routing_bias(const char *dir, float *bias, size_t n)
{
    memset(bias, 0, n * sizeof(float));
    char *cfg_path = xasprintf("%s/config.json", dir), *path = xasprintf("%s/trainer.json", dir);
    cJSON *cfg = json_parse_file(cfg_path);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(cfg, "training");
    int uses = tr && !strcmp(json_opt_str(tr, "balance", "", cfg_path), "bias") && path_exists(path);
    if (uses) {
        free(path);
        path = dir_member(dir, "trainer.json", dir);
        int sealed;
        cJSON *st = json_parse_file_sealed(path, &sealed);
        const cJSON *v, *a = finite_array(st, "expert_bias", n, 1e6, path);
        size_t k = 0;
        cJSON_ArrayForEach(v, a) bias[k++] = (float)v->valuedouble;
        cJSON_Delete(st);
    }
    cJSON_Delete(cfg);
    free(cfg_path);
    free(path);
    return uses;
}

int ckpt_load_model(Model *m, const char *path, int B, int T, TokHeader *tok)
{
    char *dir = ckpt_resolve(path);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", path);
    Config c;
    TokHeader th;
    cJSON_Delete(ckpt_read_config(dir, &c, &th));
    if (tok) *tok = th;
    /* the config's size against the weights' file before allocating for it */
    uint64_t total, active;
    config_count_params(&c, &total, &active);
    char *weights = dir_member(dir, "model.safetensors", dir);
    struct stat st;
    if (stat(weights, &st) == 0 && (uint64_t)st.st_size < 8 + 4 * total)
        die("%s: %llu bytes, too few for the %llu parameters that %s/config.json describes", weights,
            (unsigned long long)st.st_size, (unsigned long long)total, dir);
    free(weights);
    model_init(m, &c, B, T > 0 ? T : c.max_seq_len);
    ckpt_read_tensors(dir, "model.safetensors", m->tensors, m->n_tensors, m->params, ckpt_model_hash(dir), 0);
    int uses_bias = ckpt_read_routing_bias(dir, m->expert_bias, (size_t)c.n_layers * c.n_experts);
    free(dir);
    return uses_bias;
}
