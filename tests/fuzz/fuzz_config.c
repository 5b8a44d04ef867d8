/* config.json, both kinds: a checkpoint's (ckpt_read_config, as
 * sigma-generate, sigma-export and --resume read it) and a Hugging Face
 * directory's (hf_config_read, as sigma-export --import reads it). */
#include "common.h"
#include "base/base.h"
#include "model/hf.h"
#include "train/ckpt.h"

#include <stdlib.h>

static void sigma_config(void *arg)
{
    (void)arg;
    Config c;
    TokHeader tok;
    cJSON_Delete(ckpt_read_config(fz_dir(), &c, &tok));
}

static void hf_config(void *arg)
{
    (void)arg;
    Config c;
    hf_config_read(&c, fz_dir());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    free(fz_file("config.json", data, size));
    fz_run(sigma_config, NULL);
    fz_run(hf_config, NULL);
    return 0;
}
