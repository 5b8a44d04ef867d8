/* JSON helpers on cJSON; see json.h for why cJSON. */
#include "base/json.h"
#include "base/base.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

cJSON *json_parse(const char *buf, size_t len, size_t *err_offset)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!v) {
        if (err_offset) *err_offset = end && end >= buf ? (size_t)(end - buf) : 0;
        return NULL;
    }
    /* cJSON stops after one value: anything but white space after it is an error. */
    size_t pos = (size_t)(end - buf);
    while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\n' || buf[pos] == '\r' || buf[pos] == 0)) pos++;
    if (pos < len) {
        cJSON_Delete(v);
        if (err_offset) *err_offset = pos;
        return NULL;
    }
    return v;
}

static cJSON *parse_or_die(const char *path, char *buf, size_t len)
{
    size_t off = 0;
    cJSON *v = json_parse(buf, len, &off);
    if (!v) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (buf[i] == '\n') { line++; col = 1; } else col++;
        }
        free(buf);
        die("%s: invalid JSON at line %zu, column %zu (byte %zu)", path, line, col, off);
    }
    return v;
}

cJSON *json_parse_file(const char *path)
{
    size_t len;
    char *buf = read_file(path, JSON_MAX_BYTES, &len);
    cJSON *v = parse_or_die(path, buf, len);
    free(buf);
    return v;
}

/* The sealed value's 16 digits in the text: the last "HEX" string, since
 * "xxh3" is the object's last member. */
static char *seal_digits(char *text, size_t len, const char *hex)
{
    char quoted[19];
    snprintf(quoted, sizeof quoted, "\"%s\"", hex);
    char *found = NULL;
    for (char *p = text; (p = memmem(p, len - (size_t)(p - text), quoted, 18)); p++) found = p;
    return found ? found + 1 : NULL;
}

void json_write_file_sealed(const char *path, cJSON *v)
{
    json_add_str(v, "xxh3", "0000000000000000");   /* last: the digits are found from the end */
    char *s = json_print(v, 1);
    size_t n = strlen(s);
    char *t = xmalloc(n + 2);
    memcpy(t, s, n);
    t[n] = '\n';
    char hex[17];
    hex64(hex, hash64(t, n + 1, 0));
    char *digits = seal_digits(t, n + 1, "0000000000000000");
    if (!digits) BUG("sealed JSON without its placeholder");
    memcpy(digits, hex, 16);
    write_file_atomic(path, t, n + 1);
    free(t);
    cJSON_free(s);
    cJSON_DeleteItemFromObjectCaseSensitive(v, "xxh3");
}

cJSON *json_parse_file_sealed(const char *path, int *sealed)
{
    size_t len;
    char *buf = read_file(path, JSON_MAX_BYTES, &len);
    cJSON *v = parse_or_die(path, buf, len);
    *sealed = 0;
    const cJSON *seal = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "xxh3") : NULL;
    if (seal) {
        const cJSON *last = v->child;
        while (last->next) last = last->next;
        uint64_t want;
        if (last != seal) die("%s: field 'xxh3' must be the last field", path);
        if (!cJSON_IsString(seal) || !parse_hex64(seal->valuestring, &want)) die("%s: field 'xxh3' must be 16 lowercase hex digits", path);
        char *digits = seal_digits(buf, len, seal->valuestring);
        if (!digits) die("%s: field 'xxh3' is not written as 16 plain digits", path);
        memset(digits, '0', 16);
        if (hash64(buf, len, 0) != want) die("%s: checksum mismatch: the file is corrupt (field 'xxh3')", path);
        *sealed = 1;
    }
    free(buf);
    return v;
}

const cJSON *json_req(const cJSON *obj, const char *key, const char *what)
{
    if (!cJSON_IsObject(obj)) die("%s: expected a JSON object", what);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) die("%s: field '%s' is missing", what, key);
    return v;
}

static uint64_t as_u64(const cJSON *v, const char *key, const char *what)
{
    if (!cJSON_IsNumber(v)) die("%s: field '%s' must be a number", what, key);
    double d = v->valuedouble;
    if (d < 0 || d != floor(d) || d > 9007199254740992.0)
        die("%s: field '%s' must be a non-negative integer, got %.17g", what, key, d);
    return (uint64_t)d;
}

uint64_t json_req_u64(const cJSON *obj, const char *key, const char *what)
{
    return as_u64(json_req(obj, key, what), key, what);
}

static int as_int(uint64_t v, const char *key, const char *what)
{
    if (v > JSON_MAX_INT) die("%s: field '%s' is too large (%llu, at most %d)", what, key, (unsigned long long)v, JSON_MAX_INT);
    return (int)v;
}

int json_req_int(const cJSON *obj, const char *key, const char *what)
{
    return as_int(json_req_u64(obj, key, what), key, what);
}

int json_opt_int(const cJSON *obj, const char *key, int def, const char *what)
{
    return as_int(json_opt_u64(obj, key, (uint64_t)def, what), key, what);
}

int64_t json_req_i64(const cJSON *obj, const char *key, const char *what)
{
    const cJSON *v = json_req(obj, key, what);
    if (!cJSON_IsNumber(v)) die("%s: field '%s' must be a number", what, key);
    double d = v->valuedouble;
    if (d != floor(d) || fabs(d) > 9007199254740992.0) die("%s: field '%s' must be an integer, got %.17g", what, key, d);
    return (int64_t)d;
}

double json_req_num(const cJSON *obj, const char *key, const char *what)
{
    const cJSON *v = json_req(obj, key, what);
    if (!cJSON_IsNumber(v)) die("%s: field '%s' must be a number", what, key);
    return v->valuedouble;
}

const char *json_req_str(const cJSON *obj, const char *key, const char *what)
{
    const cJSON *v = json_req(obj, key, what);
    if (!cJSON_IsString(v)) die("%s: field '%s' must be a string", what, key);
    return v->valuestring;
}

int json_req_bool(const cJSON *obj, const char *key, const char *what)
{
    const cJSON *v = json_req(obj, key, what);
    if (!cJSON_IsBool(v)) die("%s: field '%s' must be true or false", what, key);
    return cJSON_IsTrue(v);
}

uint64_t json_opt_u64(const cJSON *obj, const char *key, uint64_t def, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v ? as_u64(v, key, what) : def;
}

double json_opt_num(const cJSON *obj, const char *key, double def, const char *what)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) ? json_req_num(obj, key, what) : def;
}

const char *json_opt_str(const cJSON *obj, const char *key, const char *def, const char *what)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) ? json_req_str(obj, key, what) : def;
}

int json_opt_bool(const cJSON *obj, const char *key, int def, const char *what)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) ? json_req_bool(obj, key, what) : def;
}

uint64_t json_req_hex64(const cJSON *obj, const char *key, const char *what)
{
    uint64_t v;
    if (!parse_hex64(json_req_str(obj, key, what), &v))
        die("%s: field '%s' must be 16 lowercase hex digits", what, key);
    return v;
}

char *json_print(const cJSON *v, int pretty)
{
    char *s = pretty ? cJSON_Print(v) : cJSON_PrintUnformatted(v);
    if (!s) BUG("out of memory printing JSON");
    return s;
}

void json_write_file_atomic(const char *path, const cJSON *v)
{
    char *s = json_print(v, 1);
    size_t n = strlen(s);
    char *t = xmalloc(n + 2);
    memcpy(t, s, n);
    t[n] = '\n';
    write_file_atomic(path, t, n + 1);
    free(t);
    cJSON_free(s);
}

static cJSON *checked(cJSON *v)
{
    if (!v) BUG("out of memory building JSON");
    return v;
}

cJSON *json_obj(void) { return checked(cJSON_CreateObject()); }
cJSON *json_arr(void) { return checked(cJSON_CreateArray()); }
void json_add(cJSON *obj, const char *key, cJSON *item)
{
    if (!cJSON_AddItemToObject(obj, key, checked(item))) BUG("cannot add JSON field %s", key);
}
void json_push(cJSON *arr, cJSON *item)
{
    if (!cJSON_AddItemToArray(arr, checked(item))) BUG("cannot append to a JSON array");
}
/* cJSON prints a number in 15 digits whenever that reads back within an
 * ulp, so 3e-4/10 came back as 3e-05, another double: a resumed run's
 * settings drifted in their last bit. The shortest form that reads back
 * exactly, as a raw value; non-finite values print as null, as before. */
cJSON *json_number(double v)
{
    if (!isfinite(v)) return checked(cJSON_CreateNumber(v));
    char text[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v) break;
    }
    return checked(cJSON_CreateRaw(text));
}
void json_add_num(cJSON *obj, const char *key, double v) { json_add(obj, key, json_number(v)); }
void json_add_u64(cJSON *obj, const char *key, uint64_t v)
{
    if (v > 9007199254740992ull) BUG("%s = %llu does not fit a JSON number exactly", key, (unsigned long long)v);
    json_add(obj, key, cJSON_CreateNumber((double)v));
}
void json_add_str(cJSON *obj, const char *key, const char *s) { json_add(obj, key, cJSON_CreateString(s)); }
void json_add_bool(cJSON *obj, const char *key, int v) { json_add(obj, key, cJSON_CreateBool(v)); }
void json_add_hex64(cJSON *obj, const char *key, uint64_t v)
{
    char hex[17];
    hex64(hex, v);
    json_add_str(obj, key, hex);
}

int json_has_nul_escape(const char *buf, size_t len)
{
    /* "\u0000" (any case of hex digits is just 0s) preceded by an odd
     * number of backslashes, i.e. a real escape and not "\\u0000"; memchr
     * skips to each backslash at the speed of memory. */
    for (const char *p = buf, *end = buf + len; (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p++) {
        if (end - p < 6 || memcmp(p + 1, "u0000", 5) != 0) continue;
        size_t bs = 0;
        while (p - bs > buf && p[-1 - (ptrdiff_t)bs] == '\\') bs++;
        if (bs % 2 == 0) return 1;
    }
    return 0;
}

/* The length of the valid UTF-8 sequence at s[n] (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

void json_write_bytes(FILE *f, const void *bytes, size_t n, const char *name)
{
    const unsigned char *s = bytes;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_valid_len(s + i, n - i);
        if (len == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        unsigned char c = s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fwrite(s + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
    if (ferror(f)) die("%s: write error", name);
}
