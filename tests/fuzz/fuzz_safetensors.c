/* A safetensors file through both of its readers' callers: sigma's
 * checkpoint reader (safetensors_load, F32, every tensor and nothing else)
 * and sigma-export --import (hf_weights_read, F32 or BF16), for the tiny
 * model of common.h. */
#include "common.h"
#include "base/base.h"
#include "model/hf.h"

#include <stdlib.h>

static void sigma_reader(void *arg)
{
    Model *m = fz_tiny_model();
    safetensors_load(arg, m->tensors, m->n_tensors, m->params, "", 0);
}
static void hf_reader(void *arg) { (void)arg; hf_weights_read(fz_tiny_model(), fz_dir()); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_tiny_model();   /* made before a run: fz_run frees what a refused run allocated */
    char *path = fz_file("model.safetensors", data, size);
    fz_run(sigma_reader, path);
    fz_run(hf_reader, NULL);
    free(path);
    return 0;
}
