/* A checkpoint's files, written and read in one place; see ckpt.h. Apart
 * from ckpt.c so that the run-directory code links without the model. */
#include "train/ckpt.h"

#include <stdlib.h>

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

cJSON *ckpt_read_config(const char *dir, Config *c, TokHeader *tok)
{
    char *path = xasprintf("%s/config.json", dir);
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

void ckpt_read_tensors(const char *dir, const char *name, const ParamTensor *t, int n, float *base, uint64_t want_hash)
{
    char *path = xasprintf("%s/%s", dir, name);
    if (want_hash && file_hash64(path) != want_hash) die("%s: checksum mismatch: the checkpoint is corrupt", path);
    safetensors_load(path, t, n, base, "");
    free(path);
}

uint64_t ckpt_model_hash(const char *dir)
{
    char *path = xasprintf("%s/trainer.json", dir);
    uint64_t h = 0;
    if (path_exists(path)) {
        cJSON *st = json_parse_file(path);
        h = json_req_hex64(st, "model_xxh3", path);
        cJSON_Delete(st);
    }
    free(path);
    return h;
}

void ckpt_load_model(Model *m, const char *path, int B, int T, TokHeader *tok)
{
    char *dir = ckpt_resolve(path);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", path);
    Config c;
    TokHeader th;
    cJSON_Delete(ckpt_read_config(dir, &c, &th));
    if (tok) *tok = th;
    model_init(m, &c, B, T > 0 ? T : c.max_seq_len);
    ckpt_read_tensors(dir, "model.safetensors", m->tensors, m->n_tensors, m->params, ckpt_model_hash(dir));
    free(dir);
}
