/* safetensors, fp32: u64 little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end)}} and "__metadata__":
 * {"format": "pt"}) padded with spaces to a multiple of 8, then the tensor
 * data, contiguous and in order. Reading checks all of it and names the
 * tensor that is wrong. */
#include "base/base.h"
#include "base/json.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HEADER (256u << 20)

static char *full_name(const char *prefix, const char *name)
{
    return xasprintf("%s%s", prefix, name);
}

void safetensors_save(const char *path, const ParamTensor *t, int n, const float *base, const char *prefix)
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
    for (int i = 0; i < n; i++) xfwrite(base + t[i].offset, t[i].numel * sizeof(float), af.f, path);
    atomic_file_commit(&af);
    free(hdr);
    cJSON_free(js);
    cJSON_Delete(h);
}

typedef struct { uint64_t begin, end; } Span;
static int cmp_span(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

void safetensors_load(const char *path, const ParamTensor *t, int n, float *base, const char *prefix)
{
    FILE *f = xfopen(path, "rb");
    if (fseek(f, 0, SEEK_END) != 0) die("%s: cannot seek", path);
    long size = ftell(f);
    rewind(f);
    uint64_t hlen;
    if (size < 8 || !xfread_exact(&hlen, 8, f, path, 0)) die("%s: too short for a safetensors file", path);
    if (hlen > MAX_HEADER || hlen > (uint64_t)size - 8) die("%s: header length %llu does not fit the file (%ld bytes)", path, (unsigned long long)hlen, size);
    char *hdr = xmalloc(hlen + 1);
    xfread_exact(hdr, hlen, f, path, 8);
    hdr[hlen] = 0;
    size_t err;
    cJSON *h = json_parse(hdr, hlen, &err);
    if (!h || !cJSON_IsObject(h)) die("%s: the header is not a JSON object (byte %zu)", path, 8 + err);
    uint64_t data_size = (uint64_t)size - 8 - hlen;

    Span *spans = xcalloc((size_t)n + 1, sizeof(Span));
    for (int i = 0; i < n; i++) {
        char *name = full_name(prefix, t[i].name);
        const cJSON *te = cJSON_GetObjectItemCaseSensitive(h, name);
        if (!te) die("%s: tensor %s is missing", path, name);
        const char *dtype = json_req_str(te, "dtype", name);
        if (strcmp(dtype, "F32")) die("%s: tensor %s has dtype %s, expected F32", path, name, dtype);
        const cJSON *shape = json_req(te, "shape", name), *offs = json_req(te, "data_offsets", name);
        int ok = cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == t[i].ndim;
        for (int k = 0; ok && k < t[i].ndim; k++) ok = cJSON_GetArrayItem(shape, k)->valuedouble == t[i].shape[k];
        if (!ok) {
            char *got = json_print(shape, 0);
            if (t[i].ndim == 2) die("%s: tensor %s has shape %s, expected [%d, %d]", path, name, got, t[i].shape[0], t[i].shape[1]);
            die("%s: tensor %s has shape %s, expected [%d]", path, name, got, t[i].shape[0]);
        }
        if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) die("%s: tensor %s: bad data_offsets", path, name);
        double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
        if (b < 0 || en < b || en > (double)data_size || (uint64_t)(en - b) != t[i].numel * sizeof(float))
            die("%s: tensor %s: data_offsets [%.0f, %.0f] do not fit %zu floats in %llu bytes of data", path, name, b, en,
                t[i].numel, (unsigned long long)data_size);
        spans[i] = (Span){(uint64_t)b, (uint64_t)en};
        if (fseek(f, (long)(8 + hlen + (uint64_t)b), SEEK_SET) != 0) die("%s: cannot seek to tensor %s", path, name);
        if (!xfread_exact(base + t[i].offset, t[i].numel * sizeof(float), f, path, 8 + hlen + (uint64_t)b))
            die("%s: tensor %s is cut short", path, name);
        free(name);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++) {
            char *name = full_name(prefix, t[i].name);
            known = !strcmp(name, e->string);
            free(name);
        }
        if (!known) die("%s: unexpected tensor %s", path, e->string);
    }
    qsort(spans, (size_t)n, sizeof(Span), cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (spans[i].begin != at) die("%s: tensor data is not contiguous at byte %llu of the data", path, (unsigned long long)at);
        at = spans[i].end;
    }
    if (at != data_size) die("%s: %llu bytes of data after the last tensor", path, (unsigned long long)(data_size - at));
    free(spans);
    cJSON_Delete(h);
    free(hdr);
    xfclose(f, path);
}
