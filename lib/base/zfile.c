/* zstd-compressed files read and written as ordinary stdio streams
 * (fopencookie), so that every reader that takes a FILE (getline, fread)
 * reads a .zst input as it is, and a writer compresses by wrapping its
 * output. The data sets that web-scale pipelines pass around (FineWeb's,
 * datatrove's and NeMo Curator's outputs) are JSON Lines in .zst files. */
#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

int is_zst_path(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".zst");
}

typedef struct {
    FILE *raw;
    char *name;
    ZSTD_DCtx *d;
    ZSTD_inBuffer in;
    uint8_t *inbuf;
    uint64_t in_offset;   /* compressed bytes consumed before inbuf, for messages */
    size_t pending;       /* the decoder's hint: 0 at the end of a frame */
    int eof;
} ZReader;

enum { Z_IN = 1 << 17 };

static ssize_t zr_read(void *cookie, char *buf, size_t size)
{
    ZReader *z = cookie;
    ZSTD_outBuffer out = {buf, size, 0};
    while (out.pos == 0) {
        if (z->in.pos == z->in.size) {
            if (z->eof) break;
            z->in_offset += z->in.size;
            z->in.size = xfread_some(z->inbuf, Z_IN, z->raw, z->name);
            z->in.pos = 0;
            if (z->in.size == 0) {
                z->eof = 1;
                break;
            }
        }
        size_t r = ZSTD_decompressStream(z->d, &out, &z->in);
        if (ZSTD_isError(r))
            die("%s: not valid zstd data near compressed byte %llu: %s", z->name,
                (unsigned long long)(z->in_offset + z->in.pos), ZSTD_getErrorName(r));
        z->pending = r;
    }
    /* The end of the compressed bytes inside a frame: a cut file. */
    if (out.pos == 0 && z->eof && z->pending)
        die("%s: truncated: the zstd data ends inside a frame at compressed byte %llu", z->name,
            (unsigned long long)(z->in_offset + z->in.size));
    return (ssize_t)out.pos;
}

static int zr_close(void *cookie)
{
    ZReader *z = cookie;
    xfclose(z->raw, z->name);
    ZSTD_freeDCtx(z->d);
    free(z->inbuf);
    free(z->name);
    free(z);
    return 0;
}

FILE *xfopen_read(const char *path)
{
    FILE *raw = xfopen(path, "rb");
    if (!is_zst_path(path)) return raw;
    ZReader *z = xcalloc(1, sizeof *z);
    z->raw = raw;
    z->name = xstrdup(path);
    z->d = ZSTD_createDCtx();
    if (!z->d) BUG("ZSTD_createDCtx failed");
    z->inbuf = xmalloc(Z_IN);
    z->in.src = z->inbuf;
    FILE *f = fopencookie(z, "rb", (cookie_io_functions_t){.read = zr_read, .close = zr_close});
    if (!f) die("%s: cannot open a decompressing stream: %s", path, strerror(errno));
#ifdef SIGMA_FUZZ
    sg_fuzz_track_file(f, 1);
#endif
    return f;
}

typedef struct {
    FILE *raw;
    char *name;
    ZSTD_CCtx *c;
    uint8_t *outbuf;
    size_t out_cap;
} ZWriter;

static void zw_drain(ZWriter *z, ZSTD_inBuffer *in, ZSTD_EndDirective how)
{
    for (;;) {
        ZSTD_outBuffer out = {z->outbuf, z->out_cap, 0};
        size_t left = ZSTD_compressStream2(z->c, &out, in, how);
        if (ZSTD_isError(left)) die("%s: zstd compression failed: %s", z->name, ZSTD_getErrorName(left));
        xfwrite(z->outbuf, out.pos, z->raw, z->name);
        if (how == ZSTD_e_end ? left == 0 : in->pos == in->size) return;
    }
}

static ssize_t zw_write(void *cookie, const char *buf, size_t size)
{
    ZWriter *z = cookie;
    ZSTD_inBuffer in = {buf, size, 0};
    zw_drain(z, &in, ZSTD_e_continue);
    return (ssize_t)size;
}

static int zw_close(void *cookie)
{
    ZWriter *z = cookie;
    ZSTD_inBuffer in = {NULL, 0, 0};
    zw_drain(z, &in, ZSTD_e_end);
    xfflush(z->raw, z->name);
    ZSTD_freeCCtx(z->c);
    free(z->outbuf);
    free(z->name);
    free(z);
    return 0;
}

FILE *zstd_writer(FILE *raw, const char *name, int level)
{
    ZWriter *z = xcalloc(1, sizeof *z);
    z->raw = raw;
    z->name = xstrdup(name);
    z->c = ZSTD_createCCtx();
    if (!z->c) BUG("ZSTD_createCCtx failed");
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
    z->out_cap = ZSTD_CStreamOutSize();
    z->outbuf = xmalloc(z->out_cap);
    FILE *f = fopencookie(z, "wb", (cookie_io_functions_t){.write = zw_write, .close = zw_close});
    if (!f) die("%s: cannot open a compressing stream: %s", name, strerror(errno));
#ifdef SIGMA_FUZZ
    sg_fuzz_track_file(f, 1);
#endif
    return f;
}
