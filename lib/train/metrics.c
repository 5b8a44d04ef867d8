/* Metrics JSON Lines; see metrics.h. */
#include "train/metrics.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

/* A metrics file is read whole: 16 GiB is a run of millions of steps. */
#define METRICS_MAX_BYTES ((size_t)1 << 34)

static void drop_later_steps(const char *path, uint64_t resume_step)
{
    if (!path_exists(path)) return;
    size_t len;
    char *text = read_file(path, METRICS_MAX_BYTES, &len);
    char *kept = xmalloc(len + 1);
    size_t n = 0, lineno = 0;
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t l = end ? (size_t)(end - line) : (size_t)(text + len - line);
        lineno++;
        cJSON *o = json_parse(line, l, NULL);
        const cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        /* a line cut short by a kill is dropped too */
        if (cJSON_IsNumber(step) && step->valuedouble < (double)resume_step && end) {
            memcpy(kept + n, line, l + 1);
            n += l + 1;
        } else if (!o && end) {
            warn("%s: line %zu is not JSON; dropped", path, lineno);
        }
        cJSON_Delete(o);
        line += l + (end ? 1 : 0);
    }
    write_file_atomic(path, kept, n);
    free(kept);
    free(text);
}

void metrics_open(Metrics *m, const char *path, int resuming, uint64_t resume_step)
{
    memset(m, 0, sizeof *m);
    if (!path) return;
    m->path = xstrdup(path);
    if (resuming) drop_later_steps(path, resume_step);
    else if (path_exists(path)) write_file_atomic(path, "", 0);   /* a new run starts a new file */
    m->f = xfopen(path, "ab");
}

void metrics_write(Metrics *m, cJSON *obj)
{
    if (m->f) {
        char *s = json_print(obj, 0);
        fprintf(m->f, "%s\n", s);
        xfflush(m->f, m->path);
        cJSON_free(s);
    }
    cJSON_Delete(obj);
}

void metrics_close(Metrics *m)
{
    if (m->f) xfclose(m->f, m->path);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ---- reading a metrics file back ------------------------------------------------- */

void metrics_read(MetricsLog *log, const char *path)
{
    memset(log, 0, sizeof *log);
    log->path = xstrdup(path);
    size_t len, cap = 0, lineno = 0;
    char *text = read_file(path, METRICS_MAX_BYTES, &len);
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t l = end ? (size_t)(end - line) : (size_t)(text + len - line);
        lineno++;
        size_t blank = strspn(line, " \t\r");
        if (blank < l) {
            cJSON *o = json_parse(line, l, NULL);
            const cJSON *type = o ? cJSON_GetObjectItemCaseSensitive(o, "type") : NULL;
            const cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
            if (!cJSON_IsObject(o) || !cJSON_IsString(type) || !cJSON_IsNumber(step))
                die("%s:%zu: not a metrics line (a JSON object with \"type\" and \"step\"; see sigma-formats(5))", path,
                    lineno);
            if (log->n == cap) {
                cap = cap ? 2 * cap : 256;
                log->lines = xrealloc(log->lines, cap * sizeof *log->lines);
                log->lineno = xrealloc(log->lineno, cap * sizeof *log->lineno);
            }
            log->lines[log->n] = o;
            log->lineno[log->n++] = lineno;
        }
        line += l + (end ? 1 : 0);
    }
    free(text);
    if (!log->n) die("%s: no metrics lines (an empty run?)", path);
}

void metrics_log_free(MetricsLog *log)
{
    for (size_t i = 0; i < log->n; i++) cJSON_Delete(log->lines[i]);
    free(log->lines);
    free(log->lineno);
    free(log->path);
    memset(log, 0, sizeof *log);
}

/* The keys of every line, comma-separated, each once: for the message
 * that a key is absent. */
static char *all_keys(const MetricsLog *log)
{
    char *keys = xstrdup("");
    for (size_t i = 0; i < log->n; i++) {
        const cJSON *f;
        cJSON_ArrayForEach(f, log->lines[i]) {
            char *quoted = xasprintf(", %s,", f->string);
            char *hay = xasprintf(", %s,", keys);
            int seen = strstr(hay, quoted) != NULL;
            free(hay);
            free(quoted);
            if (seen) continue;
            char *k = xasprintf("%s%s%s", keys, *keys ? ", " : "", f->string);
            free(keys);
            keys = k;
        }
    }
    return keys;
}

void metrics_series(const MetricsLog *log, const char *key, MetricsSeries *s)
{
    memset(s, 0, sizeof *s);
    char *name = xstrdup(key);
    long index = -1;
    char *br = strchr(name, '[');
    if (br) {
        char *end;
        index = strtol(br + 1, &end, 10);
        if (end == br + 1 || *end != ']' || end[1] || index < 0) die("%s: not a key or KEY[i]: '%s'", log->path, key);
        *br = 0;
    }
    size_t found = 0;
    s->step = xmalloc(log->n * sizeof *s->step);
    s->value = xmalloc(log->n * sizeof *s->value);
    for (size_t i = 0; i < log->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(log->lines[i], name);
        if (!v) continue;
        found++;
        if (index >= 0) {
            if (!cJSON_IsArray(v)) die("%s:%zu: '%s' is not an array", log->path, log->lineno[i], name);
            if (index >= cJSON_GetArraySize(v))
                die("%s:%zu: '%s' has %d elements, no [%ld]", log->path, log->lineno[i], name, cJSON_GetArraySize(v), index);
            v = cJSON_GetArrayItem(v, (int)index);
        } else if (cJSON_IsArray(v)) {
            die("%s:%zu: '%s' is an array: name an element, %s[0]", log->path, log->lineno[i], name, name);
        }
        if (cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v)) die("%s:%zu: '%s' is not a number", log->path, log->lineno[i], key);
        s->step[s->n] = cJSON_GetObjectItemCaseSensitive(log->lines[i], "step")->valuedouble;
        s->value[s->n++] = v->valuedouble;
    }
    if (!found) {
        char *keys = all_keys(log);
        die("%s: no line has the key '%s' (its keys: %s)", log->path, name, keys);
    }
    free(name);
}

void metrics_series_free(MetricsSeries *s)
{
    free(s->step);
    free(s->value);
    memset(s, 0, sizeof *s);
}

int metrics_layers(const MetricsLog *log)
{
    for (size_t i = 0; i < log->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(log->lines[i], "load_max");
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) return cJSON_GetArraySize(v);
    }
    die("%s: no line has the per-layer load (load_max): not a training run's metrics?", log->path);
}
