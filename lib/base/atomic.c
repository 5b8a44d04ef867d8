/* Atomic outputs: write under a temporary name, sync, rename. A reader sees
 * either the old complete thing or the new complete thing, never half. */
#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *parent_dir(const char *path)
{
    char *copy = xstrdup(path);
    char *d = xstrdup(dirname(copy));
    free(copy);
    return d;
}

static void sync_parent(const char *path)
{
    char *d = parent_dir(path);
    fsync_path(d);
    free(d);
}

static void atomic_file_cleanup(void *arg)
{
    AtomicFile *af = arg;
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp) unlink(af->tmp);
}

void atomic_file_open(AtomicFile *af, const char *path)
{
    af->path = xstrdup(path);
    af->tmp = xasprintf("%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) die("cannot create %s: %s", af->tmp, strerror(errno));
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) die("cannot open %s: %s", af->tmp, strerror(errno));
    sg_on_die(atomic_file_cleanup, af);
}

void atomic_file_commit(AtomicFile *af)
{
    if (fflush(af->f) != 0) die("%s: write error: %s", af->path, strerror(errno));
    if (fsync(fileno(af->f)) != 0) die("%s: cannot sync: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0) { af->f = NULL; die("%s: error closing: %s", af->path, strerror(errno)); }
    af->f = NULL;
    if (rename(af->tmp, af->path) != 0) die("cannot rename %s to %s: %s", af->tmp, af->path, strerror(errno));
    sg_on_die_remove(atomic_file_cleanup, af);
    sync_parent(af->path);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
}

void atomic_file_abort(AtomicFile *af)
{
    sg_on_die_remove(atomic_file_cleanup, af);
    atomic_file_cleanup(af);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
}

void write_file_atomic(const char *path, const void *buf, size_t n)
{
    AtomicFile af;
    atomic_file_open(&af, path);
    xfwrite(buf, n, af.f, path);
    atomic_file_commit(&af);
}

/* ---- directories ------------------------------------------------------------ */

static void atomic_dir_cleanup(void *arg)
{
    AtomicDir *ad = arg;
    if (ad->tmp) remove_tree(ad->tmp);
}

void atomic_dir_begin(AtomicDir *ad, const char *path, int force)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;   /* "out/" names the same directory as "out" */
    ad->path = xasprintf("%.*s", (int)n, path);
    ad->force = force;
    if (path_exists(ad->path) && !force)
        die("%s already exists (use --force to replace it)", ad->path);
    ad->tmp = xasprintf("%s.tmp.XXXXXX", ad->path);
    if (!mkdtemp(ad->tmp)) die("cannot create directory %s: %s", ad->tmp, strerror(errno));
    mode_t mask = umask(0);   /* mkdtemp makes it 0700; the final directory gets the usual mode */
    umask(mask);
    chmod(ad->tmp, 0777 & ~mask);
    sg_on_die(atomic_dir_cleanup, ad);
}

char *atomic_dir_file(const AtomicDir *ad, const char *name)
{
    return xasprintf("%s/%s", ad->tmp, name);
}

static void sync_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) die("cannot open directory %s: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *child = xasprintf("%s/%s", path, e->d_name);
        if (is_dir(child)) sync_tree(child);
        else fsync_path(child);
        free(child);
    }
    closedir(d);
    fsync_path(path);
}

void atomic_dir_commit(AtomicDir *ad)
{
    sync_tree(ad->tmp);
    if (renameat2(AT_FDCWD, ad->tmp, AT_FDCWD, ad->path, RENAME_NOREPLACE) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            die("cannot rename %s to %s: %s", ad->tmp, ad->path, strerror(errno));
        if (!ad->force) die("%s already exists (use --force to replace it)", ad->path);
        /* Swap the new directory into place in one step; the old one ends up
         * under the temporary name and is removed after. */
        if (renameat2(AT_FDCWD, ad->tmp, AT_FDCWD, ad->path, RENAME_EXCHANGE) != 0)
            die("cannot replace %s with %s: %s", ad->path, ad->tmp, strerror(errno));
        sg_on_die_remove(atomic_dir_cleanup, ad);
        remove_tree(ad->tmp);
    } else {
        sg_on_die_remove(atomic_dir_cleanup, ad);
    }
    sync_parent(ad->path);
    free(ad->tmp);
    free(ad->path);
    ad->tmp = ad->path = NULL;
}

void atomic_dir_abort(AtomicDir *ad)
{
    sg_on_die_remove(atomic_dir_cleanup, ad);
    atomic_dir_cleanup(ad);
    free(ad->tmp);
    free(ad->path);
    ad->tmp = ad->path = NULL;
}
