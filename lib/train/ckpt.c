/* Checkpoint run directories; see ckpt.h. */
#include "train/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_step_dir(const char *name, uint64_t *step, int *tmp);
static void remove_new_run(void *arg);

char *ckpt_name(uint64_t step)
{
    return xasprintf("step-%08llu", (unsigned long long)step);
}

void ckpt_begin(AtomicDir *ad, const char *out, uint64_t step)
{
    sg_on_die_remove(remove_new_run, NULL);   /* the run has begun: its directory stays */
    if (!is_dir(out) && mkdir(out, 0777) != 0 && errno != EEXIST) die("cannot create %s: %s", out, strerror(errno));
    char *name = ckpt_name(step);
    char *path = xasprintf("%s/%s", out, name);
    /* force: a run resumed from an earlier checkpoint may save this step again */
    atomic_dir_begin(ad, path, 1);
    free(path);
    free(name);
}

static int parse_step_dir(const char *name, uint64_t *step, int *tmp)
{
    unsigned long long s;
    int n = 0;
    if (sscanf(name, "step-%8llu%n", &s, &n) != 1 || n != 13) return 0;
    *tmp = strncmp(name + 13, ".tmp.", 5) == 0;
    if (name[13] && !*tmp) return 0;
    *step = s;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Removes checkpoints older than the newest `keep`, and temporary
 * directories that a killed run left (none is being written now). */
static void prune(const char *out, uint64_t current, unsigned keep)
{
    DIR *d = opendir(out);
    if (!d) die("cannot read %s: %s", out, strerror(errno));
    size_t n = 0, cap = 16;
    uint64_t *steps = xmalloc(cap * sizeof *steps);
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t s;
        int tmp;
        if (!parse_step_dir(e->d_name, &s, &tmp)) continue;
        if (tmp) {
            char *p = xasprintf("%s/%s", out, e->d_name);
            remove_tree(p);
            free(p);
            continue;
        }
        if (n == cap) steps = xrealloc(steps, (cap *= 2) * sizeof *steps);
        steps[n++] = s;
    }
    closedir(d);
    qsort(steps, n, sizeof *steps, cmp_u64);
    for (size_t i = 0; keep && i + keep < n; i++) {
        if (steps[i] == current) continue;
        char *name = ckpt_name(steps[i]);
        char *p = xasprintf("%s/%s", out, name);
        remove_tree(p);
        free(p);
        free(name);
    }
    free(steps);
}

void ckpt_commit(AtomicDir *ad, const char *out, uint64_t step, unsigned keep)
{
    atomic_dir_commit(ad);
    char *name = ckpt_name(step);
    char *latest = xasprintf("%s/latest", out);
    char *line = xasprintf("%s\n", name);
    write_file_atomic(latest, line, strlen(line));
    prune(out, step, keep);
    free(line);
    free(latest);
    free(name);
}

/* A run directory made by this process, until its first checkpoint: a run
 * refused before then leaves nothing behind (system calls only: it may run
 * in a signal handler). */
static char new_run[4096], new_run_lock[4096 + 8];
static void remove_new_run(void *arg)
{
    (void)arg;
    unlink(new_run_lock);
    rmdir(new_run);
}

void ckpt_run_open(const char *out, int resume)
{
    struct stat st;
    if (stat(out, &st) != 0) {
        if (resume) die("%s: no checkpoint to resume from (%s)", out, strerror(errno));
        if (mkdir(out, 0777) != 0) die("cannot create %s: %s", out, strerror(errno));
        if (strlen(out) < sizeof new_run) {
            snprintf(new_run, sizeof new_run, "%s", out);
            snprintf(new_run_lock, sizeof new_run_lock, "%s/.lock", out);
            sg_on_die(remove_new_run, NULL);
        }
    } else if (!S_ISDIR(st.st_mode)) {
        die("--out %s exists and is not a directory; a run directory is wanted", out);
    }
    dir_lock(out);
    char *latest = xasprintf("%s/latest", out);
    if (lstat(latest, &st) == 0 && !S_ISREG(st.st_mode)) die("%s is not a regular file; sigma does not write through it", latest);
    free(latest);
    if (resume) return;
    DIR *d = opendir(out);
    if (!d) die("cannot read %s: %s", out, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t step;
        int tmp;
        if (!strcmp(e->d_name, "latest") || (parse_step_dir(e->d_name, &step, &tmp) && !tmp))
            die("%s already holds a run (its %s): use --resume to continue it, or another --out", out, e->d_name);
    }
    closedir(d);
}

char *ckpt_resolve(const char *path)
{
    char *config = xasprintf("%s/config.json", path);
    int direct = path_exists(config);
    free(config);
    if (direct) return xstrdup(path);
    char *latest = xasprintf("%s/latest", path);
    if (!path_exists(latest)) { free(latest); return NULL; }
    free(latest);
    latest = dir_member(path, "latest", path);
    size_t len;
    char *name = read_file(latest, 4096, &len);
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' ')) name[--len] = 0;
    uint64_t step;
    int tmp;
    if (!parse_step_dir(name, &step, &tmp) || tmp) die("%s: does not name a checkpoint (\"%s\")", latest, name);
    char *dir = dir_member(path, name, latest);
    if (!is_dir(dir)) die("%s names %s, which is missing", latest, dir);
    free(name);
    free(latest);
    return dir;
}
