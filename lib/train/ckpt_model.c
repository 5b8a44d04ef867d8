/* A checkpoint's model for inference; see ckpt.h. Apart from ckpt.c so that
 * the run-directory code links without the model. */
#include "train/ckpt.h"
#include "base/json.h"
#include "data/tokstream.h"

#include <stdlib.h>

void ckpt_load_model(Model *m, const char *path, int B, int T, uint8_t fingerprint[16])
{
    char *dir = ckpt_resolve(path);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", path);
    char *cfg_path = xasprintf("%s/config.json", dir);
    cJSON *cfg = json_parse_file(cfg_path);
    Config c;
    config_from_json(&c, json_req(cfg, "model", cfg_path), cfg_path);
    config_validate(&c, cfg_path);
    if (fingerprint && !fingerprint_parse(fingerprint, json_req_str(json_req(cfg, "tokenizer", cfg_path), "fingerprint", cfg_path)))
        die("%s: bad tokenizer.fingerprint", cfg_path);
    cJSON_Delete(cfg);

    char *st_path = xasprintf("%s/trainer.json", dir), *model_path = xasprintf("%s/model.safetensors", dir);
    if (path_exists(st_path)) {   /* written by sigma-pretrain: check the weights' checksum */
        cJSON *st = json_parse_file(st_path);
        size_t len;
        char *buf = read_file(model_path, &len);
        if (hash64(buf, len, 0) != json_req_hex64(st, "model_xxh3", st_path))
            die("%s: checksum mismatch: the checkpoint is corrupt", model_path);
        free(buf);
        cJSON_Delete(st);
    }
    model_init(m, &c, B, T > 0 ? T : c.max_seq_len);
    safetensors_load(model_path, m->tensors, m->n_tensors, m->params, "");
    free(model_path);
    free(st_path);
    free(cfg_path);
    free(dir);
}
