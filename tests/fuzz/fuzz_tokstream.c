/* The token stream reader (tokreader_*), as sigma-shard reads its input. */
#include "common.h"
#include "base/base.h"
#include "data/tokstream.h"

#include <stdio.h>

#include <stdlib.h>

static void read_stream(void *arg)
{
    FILE *f = xfopen(arg, "rb");
    TokReader r;
    tokreader_open(&r, f, arg);
    uint32_t buf[64];
    int end;
    while (tokreader_read(&r, buf, 64, &end) || end) {}
    tokreader_close(&r);
    xfclose(f, arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = fz_file("stream.tok", data, size);
    fz_run(read_stream, path);
    free(path);
    return 0;
}
