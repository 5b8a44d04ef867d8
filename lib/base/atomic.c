/* Atomic outputs: write under a temporary name, sync, rename. A reader sees
 * either the old complete thing or the new complete thing, never half. */
#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SIGMA_FUZZ
#define fuzz_track sg_fuzz_track_file
#else
#define fuzz_track(f, open) ((void)0)
#endif

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

/* unlink only: it may run in a signal handler */
static void atomic_file_cleanup(void *arg)
{
    AtomicFile *af = arg;
    if (af->tmp) unlink(af->tmp);
}

/* What is not a regular file (a device, a FIFO, a socket) is written in
 * place: renaming over it would replace it. So is a descriptor named
 * through /dev or /proc (/dev/stdout, /dev/fd/3, /proc/self/fd/1), which is
 * the shell's redirection even when that is a regular file. */
static int write_in_place(const char *path)
{
    struct stat st;
    if (!strncmp(path, "/dev/std", 8) || !strncmp(path, "/dev/fd/", 8) || !strncmp(path, "/proc/", 6)) return 1;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

void atomic_file_open(AtomicFile *af, const char *path)
{
    memset(af, 0, sizeof *af);
    if (write_in_place(path)) {
        af->path = xstrdup(path);
        af->f = fopen(path, "a");   /* "a": /dev/stdout may be a file the shell opened */
        if (!af->f) die("cannot open %s: %s", path, strerror(errno));
        fuzz_track(af->f, 1);
        return;
    }
    /* a symbolic link: the file it names is replaced, the link stays */
    struct stat st;
    char *real = lstat(path, &st) == 0 && S_ISLNK(st.st_mode) ? realpath(path, NULL) : NULL;
    af->path = real ? real : xstrdup(path);
    af->tmp = xasprintf("%s.tmp.XXXXXX", af->path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) die("cannot create %s: %s", af->tmp, strerror(errno));
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) die("cannot open %s: %s", af->tmp, strerror(errno));
    fuzz_track(af->f, 1);
    sg_on_die(atomic_file_cleanup, af);
}

void atomic_file_commit(AtomicFile *af)
{
    if (!af->tmp) {   /* written in place */
        FILE *f = af->f;
        af->f = NULL;
        fuzz_track(f, 0);
        if (fclose(f) != 0) die("%s: write error: %s", af->path, strerror(errno));
        free(af->path);
        af->path = NULL;
        return;
    }
    if (fflush(af->f) != 0) die("%s: write error: %s", af->path, strerror(errno));
    if (fsync(fileno(af->f)) != 0) die("%s: cannot sync: %s", af->path, strerror(errno));
    fuzz_track(af->f, 0);
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
    if (af->f) {
        fuzz_track(af->f, 0);
        fclose(af->f);
    }
    af->f = NULL;
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

static void release_dir(AtomicDir *ad)
{
    if (ad->lock_fd >= 0) close(ad->lock_fd);
    ad->lock_fd = -1;
}

/* PATH.tmp.XXXXXX directories that no process holds locked: left by a
 * writer that was killed (SIGKILL, a crash, a power cut). One that a live
 * writer holds is left alone; the lock is held while removing, and a
 * writer that finds its new directory gone makes another. */
static void remove_stale_tmp(const char *path)
{
    char *dir = parent_dir(path), *copy = xstrdup(path), *base = xstrdup(basename(copy));
    size_t nb = strlen(base);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, base, nb) || strncmp(e->d_name + nb, ".tmp.", 5) || strlen(e->d_name + nb + 5) != 6) continue;
        char *tmp = xasprintf("%s/%s", dir, e->d_name);
        int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat a, b;
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 && lstat(tmp, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            info("removing %s, left by a writer that was stopped", tmp);
            remove_tree(tmp);
        }
        if (fd >= 0) close(fd);
        free(tmp);
    }
    if (d) closedir(d);
    free(dir);
    free(copy);
    free(base);
}

void atomic_dir_begin(AtomicDir *ad, const char *path, int force)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;   /* "out/" names the same directory as "out" */
    ad->path = xasprintf("%.*s", (int)n, path);
    ad->force = force;
    ad->lock_fd = -1;
    if (path_exists(ad->path) && !force)
        die("%s already exists (use --force to replace it)", ad->path);
    remove_stale_tmp(ad->path);
    for (int tries = 0;; tries++) {
        ad->tmp = xasprintf("%s.tmp.XXXXXX", ad->path);
        if (!mkdtemp(ad->tmp)) die("cannot create directory %s: %s", ad->tmp, strerror(errno));
        ad->lock_fd = open(ad->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        if (ad->lock_fd < 0 || flock(ad->lock_fd, LOCK_EX) != 0 || fstat(ad->lock_fd, &st) != 0)
            die("cannot lock directory %s: %s", ad->tmp, strerror(errno));
        if (st.st_nlink > 0) break;
        release_dir(ad);   /* another writer's cleanup took it for a stale one */
        free(ad->tmp);
        if (tries == 10) die("cannot create directory %s.tmp.XXXXXX: it keeps being removed", ad->path);
    }
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
    release_dir(ad);
    free(ad->tmp);
    free(ad->path);
    ad->tmp = ad->path = NULL;
}

void atomic_dir_abort(AtomicDir *ad)
{
    sg_on_die_remove(atomic_dir_cleanup, ad);
    atomic_dir_cleanup(ad);
    release_dir(ad);
    free(ad->tmp);
    free(ad->path);
    ad->tmp = ad->path = NULL;
}

/* ---- one writer per directory --------------------------------------------- */

void dir_lock(const char *dir)
{
    char *path = xasprintf("%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) die("cannot create %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) die("cannot lock %s: %s", path, strerror(errno));
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        die("%s is in use by process %s (it holds %s); two writers would destroy each other's files", dir,
            *pid ? pid : "(unknown)", path);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) die("%s: write error: %s", path, strerror(errno));
    free(path);
    /* fd stays open: the lock lasts as long as this process */
}
