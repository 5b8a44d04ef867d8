/* model.safetensors.index.json of a Hugging Face directory
 * (hf_weights_read, as sigma-export --import reads it): the names it maps
 * tensors to, beside one complete model.safetensors of the tiny model. */
#include "common.h"
#include "base/base.h"
#include "model/hf.h"

#include <stdlib.h>
#include <string.h>

static void hf_reader(void *arg) { (void)arg; hf_weights_read(fz_tiny_model(), fz_dir()); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int made;
    if (!made) {
        Model *m = fz_tiny_model();
        char *path = xasprintf("%s/model.safetensors", fz_dir());
        safetensors_save(path, m->tensors, m->n_tensors, m->params, "");
        free(path);
        made = 1;
    }
    free(fz_file("model.safetensors.index.json", data, size));
    fz_run(hf_reader, NULL);
    return 0;
}
