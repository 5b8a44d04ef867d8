/* The device table's choice and the GPU's kernel paths; see device.h. */
#include "model/device.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static const char *const attention_names[] = {"cublas", "flash"};
static const char *const experts_names[] = {"cublas", "grouped"};

const char *attention_path_name(AttentionPath a) { return attention_names[a]; }
const char *experts_path_name(ExpertsPath e) { return experts_names[e]; }

int attention_path_parse(const char *name, AttentionPath *a)
{
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, attention_names[i])) { *a = (AttentionPath)i; return 0; }
    return -1;
}

int experts_path_parse(const char *name, ExpertsPath *e)
{
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, experts_names[i])) { *e = (ExpertsPath)i; return 0; }
    return -1;
}

/* The cuBLAS paths stay the default until the fused and grouped kernels are
 * measured on a GPU (bench/gpu.md). */
void gpu_paths_default(GpuPaths *p)
{
    *p = (GpuPaths){.attention = ATTENTION_CUBLAS, .experts = EXPERTS_CUBLAS, .expert_streams = GPU_MAX_EXPERT_STREAMS};
    const char *v = getenv("SIGMA_ATTENTION");
    if (v && *v && attention_path_parse(v, &p->attention))
        warn("SIGMA_ATTENTION=%s: not cublas or flash; ignored", v);
    v = getenv("SIGMA_EXPERTS");
    if (v && *v && experts_path_parse(v, &p->experts)) warn("SIGMA_EXPERTS=%s: not cublas or grouped; ignored", v);
    v = getenv("SIGMA_EXPERT_STREAMS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > GPU_MAX_EXPERT_STREAMS)
            warn("SIGMA_EXPERT_STREAMS=%s: not a number from 1 to %d; ignored", v, GPU_MAX_EXPERT_STREAMS);
        else p->expert_streams = (int)n;
    }
}
