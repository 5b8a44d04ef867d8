/* Metrics JSON Lines; see metrics.h. */
#include "train/metrics.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static void drop_later_steps(const char *path, uint64_t resume_step)
{
    if (!path_exists(path)) return;
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);   /* 16 GiB: a run of millions of steps */
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
