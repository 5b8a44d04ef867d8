/* safetensors: u64 little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end)}} and "__metadata__":
 * {"format": "pt"}) padded with spaces to a multiple of 8, then the tensor
 * data, contiguous and in order. The one reader of the format: sigma's own
 * checkpoints (safetensors_load) and Hugging Face directories (hf.c) both
 * go through st_open, which checks the whole header against the file's
 * real size before anything is allocated for the data, as the safetensors
 * library does, and names the file, the tensor and the field. */
#include "base/base.h"
#include "base/json.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct { const char *name; int bytes; } dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

static char *full_name(const char *prefix, const char *name)
{
    return xasprintf("%s%s", prefix, name);
}

static const float *from_base(void *base, int i, const ParamTensor *t)
{
    (void)i;
    return (const float *)base + t->offset;
}

void safetensors_save(const char *path, const ParamTensor *t, int n, const float *base, const char *prefix)
{
    safetensors_save_from(path, t, n, from_base, (void *)base, prefix);
}

void safetensors_save_from(const char *path, const ParamTensor *t, int n, TensorSource get, void *ctx, const char *prefix)
{
    cJSON *h = json_obj(), *meta = json_obj();
    json_add_str(meta, "format", "pt");
    json_add(h, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = json_obj(), *shape = json_arr(), *offs = json_arr();
        json_add_str(e, "dtype", "F32");
        for (int k = 0; k < t[i].ndim; k++) json_push(shape, cJSON_CreateNumber(t[i].shape[k]));
        json_add(e, "shape", shape);
        json_push(offs, cJSON_CreateNumber((double)off));
        off += t[i].numel * sizeof(float);
        json_push(offs, cJSON_CreateNumber((double)off));
        json_add(e, "data_offsets", offs);
        char *name = full_name(prefix, t[i].name);
        json_add(h, name, e);
        free(name);
    }
    char *js = json_print(h, 0);
    size_t len = strlen(js), padded = (len + 7) / 8 * 8;
    char *hdr = xmalloc(padded);
    memcpy(hdr, js, len);
    memset(hdr + len, ' ', padded - len);
    uint64_t n64 = padded;
    AtomicFile af;
    atomic_file_open(&af, path);
    xfwrite(&n64, 8, af.f, path);
    xfwrite(hdr, padded, af.f, path);
    for (int i = 0; i < n; i++) xfwrite(get(ctx, i, &t[i]), t[i].numel * sizeof(float), af.f, path);
    atomic_file_commit(&af);
    free(hdr);
    cJSON_free(js);
    cJSON_Delete(h);
}

/* ---- the reader --------------------------------------------------------------- */

/* A non-negative integer that a JSON number holds exactly, else -1. */
static double json_count(const cJSON *v)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    return d >= 0 && d == floor(d) && d <= 9007199254740992.0 ? d : -1;
}

static int cmp_begin(const void *a, const void *b)
{
    const StTensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* One tensor's entry, checked alone; `what` is "FILE: tensor NAME". */
static void read_entry(StTensor *t, const cJSON *e, const char *what, uint64_t data_size)
{
    if (!cJSON_IsObject(e)) die("%s: expected a JSON object {dtype, shape, data_offsets}", what);
    const char *dtype = json_req_str(e, "dtype", what);
    t->elem_bytes = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtype, dtypes[i].name)) t->elem_bytes = dtypes[i].bytes;
    if (!t->elem_bytes) die("%s: field 'dtype': unknown dtype \"%.32s\"", what, dtype);
    t->dtype = dtype;
    const cJSON *shape = json_req(e, "shape", what), *offs = json_req(e, "data_offsets", what);
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > ST_MAX_DIMS)
        die("%s: field 'shape' must be an array of at most %d sizes", what, ST_MAX_DIMS);
    t->ndim = cJSON_GetArraySize(shape);
    uint64_t numel = 1;
    for (int k = 0; k < t->ndim; k++) {
        double v = json_count(cJSON_GetArrayItem(shape, k));
        if (v < 0) die("%s: field 'shape': size %d is not a non-negative integer", what, k);
        t->shape[k] = (uint64_t)v;
        if (!mul_u64(numel, t->shape[k], &numel)) die("%s: field 'shape': the number of elements overflows", what);
    }
    t->numel = numel;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        die("%s: field 'data_offsets' must be an array of two byte offsets [begin, end]", what);
    double b = json_count(cJSON_GetArrayItem(offs, 0)), en = json_count(cJSON_GetArrayItem(offs, 1));
    if (b < 0 || en < 0) die("%s: field 'data_offsets' must hold two non-negative integers", what);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    if (t->end < t->begin || t->end > data_size)
        die("%s: field 'data_offsets' [%llu, %llu] is not a range within the %llu bytes of data", what,
            (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_size);
    uint64_t bytes;
    if (!mul_u64(numel, (uint64_t)t->elem_bytes, &bytes) || bytes != t->end - t->begin)
        die("%s: field 'data_offsets' spans %llu bytes, its shape and dtype %s need %llu x %d", what,
            (unsigned long long)(t->end - t->begin), dtype, (unsigned long long)numel, t->elem_bytes);
}

void st_open(StFile *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->path = xstrdup(path);
    s->f = xfopen(path, "rb");
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0) die("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s: not a safetensors file: not a regular file", path);
    uint64_t size = (uint64_t)st.st_size, hlen;
    if (size < 8 || !xfread_exact(&hlen, 8, s->f, path, 0))
        die("%s: not a safetensors file: %llu bytes, too short for the 8-byte header length", path, (unsigned long long)size);
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        die("%s: not a safetensors file: the header length (bytes 0-7) is %llu, the file has %llu bytes after it%s", path,
            (unsigned long long)hlen, (unsigned long long)(size - 8), hlen > ST_MAX_HEADER ? " (and the limit is 100 MB)" : "");
    s->header_len = hlen;
    s->data_start = 8 + hlen;
    s->data_size = size - 8 - hlen;
    char *hdr = xmalloc(hlen + 1);
    xfread_exact(hdr, hlen, s->f, path, 8);
    hdr[hlen] = 0;
    if (hlen == 0 || hdr[0] != '{') die("%s: not a safetensors file: the header (byte 8) does not begin with '{'", path);
    size_t err = 0;
    s->h = json_parse(hdr, hlen, &err);
    if (!s->h) die("%s: the header is not valid JSON at byte %zu (header byte %zu)", path, 8 + err, err);
    free(hdr);
    if (!cJSON_IsObject(s->h)) die("%s: the header is not a JSON object (byte 8)", path);

    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, s->h) n++;
    s->t = xcalloc(n ? n : 1, sizeof(StTensor));
    cJSON_ArrayForEach(e, s->h) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) die("%s: __metadata__ must be a JSON object", path);
            continue;
        }
        StTensor *t = &s->t[s->n++];
        t->name = e->string;
        char *what = xasprintf("%s: tensor %s", path, e->string);
        read_entry(t, e, what, s->data_size);
        free(what);
    }
    /* names once each; the data contiguous, in any order of the header,
     * covering all the bytes after it */
    qsort(s->t, s->n, sizeof(StTensor), cmp_name);
    for (size_t i = 1; i < s->n; i++)
        if (!strcmp(s->t[i].name, s->t[i - 1].name)) die("%s: tensor %s appears twice in the header", path, s->t[i].name);
    StTensor *by_begin = xmalloc((s->n ? s->n : 1) * sizeof(StTensor));
    memcpy(by_begin, s->t, s->n * sizeof(StTensor));
    qsort(by_begin, s->n, sizeof(StTensor), cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (by_begin[i].begin != at)
            die("%s: tensor %s: data_offsets begin at %llu, the previous tensor ends at %llu (the data must be contiguous)",
                path, by_begin[i].name, (unsigned long long)by_begin[i].begin, (unsigned long long)at);
        at = by_begin[i].end;
    }
    free(by_begin);
    if (at != s->data_size)
        die("%s: %llu bytes after the last tensor's data (byte %llu of the file)", path, (unsigned long long)(s->data_size - at),
            (unsigned long long)(s->data_start + at));
}

const StTensor *st_find(const StFile *s, const char *name)
{
    StTensor key = {.name = name};
    return bsearch(&key, s->t, s->n, sizeof(StTensor), cmp_name);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void st_read(StFile *s, const StTensor *e, const ParamTensor *want, int allow_bf16, float *out)
{
    int bf16 = !strcmp(e->dtype, "BF16");
    if (strcmp(e->dtype, "F32") && !(allow_bf16 && bf16))
        die("%s: tensor %s has dtype %s, expected F32%s", s->path, e->name, e->dtype, allow_bf16 ? " or BF16" : "");
    int ok = e->ndim == want->ndim;
    for (int k = 0; ok && k < want->ndim; k++) ok = e->shape[k] == (uint64_t)want->shape[k];
    if (!ok) {
        char got[160] = "[";
        for (int k = 0; k < e->ndim; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", k ? ", " : "", (unsigned long long)e->shape[k]);
        strcat(got, "]");
        if (want->ndim == 2) die("%s: tensor %s has shape %s, expected [%d, %d]", s->path, e->name, got, want->shape[0], want->shape[1]);
        die("%s: tensor %s has shape %s, expected [%d]", s->path, e->name, got, want->shape[0]);
    }
    uint64_t at = s->data_start + e->begin;
    if (fseeko(s->f, (off_t)at, SEEK_SET) != 0) die("%s: cannot seek to tensor %s: %s", s->path, e->name, strerror(errno));
    if (!bf16) {
        if (!xfread_exact(out, want->numel * 4, s->f, s->path, at)) die("%s: tensor %s is cut short", s->path, e->name);
        return;
    }
    enum { CHUNK = 1 << 15 };
    uint16_t buf[CHUNK];
    for (size_t a = 0; a < want->numel; a += CHUNK) {
        size_t n = want->numel - a < CHUNK ? want->numel - a : CHUNK;
        if (!xfread_exact(buf, n * 2, s->f, s->path, at + 2 * a)) die("%s: tensor %s is cut short", s->path, e->name);
        for (size_t b = 0; b < n; b++) out[a + b] = from_bf16(buf[b]);
    }
}

void st_close(StFile *s)
{
    if (s->f) xfclose(s->f, s->path);
    cJSON_Delete(s->h);
    free(s->t);
    free(s->path);
    memset(s, 0, sizeof *s);
}

void safetensors_load(const char *path, const ParamTensor *t, int n, float *base, const char *prefix, int some)
{
    StFile s;
    st_open(&s, path);
    for (int i = 0; i < n; i++) {
        char *name = full_name(prefix, t[i].name);
        const StTensor *e = st_find(&s, name);
        if (!e) die("%s: tensor %s is missing", path, name);
        st_read(&s, e, &t[i], 0, base + t[i].offset);
        free(name);
    }
    if (!some && s.n != (size_t)n) {   /* every wanted name was found once: something else is there too */
        for (size_t i = 0; i < s.n; i++) {
            int known = 0;
            for (int k = 0; k < n && !known; k++) {
                char *name = full_name(prefix, t[k].name);
                known = !strcmp(name, s.t[i].name);
                free(name);
            }
            if (!known) die("%s: unexpected tensor %s", path, s.t[i].name);
        }
    }
    st_close(&s);
}
