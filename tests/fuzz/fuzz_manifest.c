/* manifest.json of a shard set (shardset_open), as every tool that takes
 * a shard set reads it. */
#include "common.h"
#include "base/base.h"
#include "data/shard.h"

#include <stdlib.h>

static void open_set(void *arg)
{
    (void)arg;
    ShardSet set;
    shardset_open(&set, fz_dir());
    shardset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    free(fz_file("manifest.json", data, size));
    fz_run(open_set, NULL);
    return 0;
}
