/* Checked stdio and file-system helpers: every error names the file. */
#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef SIGMA_FUZZ
/* The fuzz build: the files opened (xfopen, atomic files, zstd streams) and
 * not closed yet, so that a fuzz target closes those a refusal left open
 * (sg_fuzz_close_files), the last opened first: a zstd stream closes or
 * flushes the file under it. */
enum { FUZZ_FILES = 64 };
static FILE *open_files[FUZZ_FILES];
static int n_open;
void sg_fuzz_track_file(FILE *f, int open)
{
    if (open) {
        if (n_open < FUZZ_FILES) open_files[n_open++] = f;
        return;
    }
    for (int i = n_open - 1; i >= 0; i--)
        if (open_files[i] == f) {
            memmove(&open_files[i], &open_files[i + 1], (size_t)(n_open - i - 1) * sizeof *open_files);
            n_open--;
            return;
        }
}
void sg_fuzz_close_files(void)
{
    while (n_open > 0) fclose(open_files[--n_open]);
}
#define track_file sg_fuzz_track_file
#endif

FILE *xfopen(const char *path, const char *mode)
{
    if (strcmp(path, "-") == 0) return mode[0] == 'r' ? stdin : stdout;
    FILE *f = fopen(path, mode);
    if (!f) die("cannot open %s: %s", path, strerror(errno));
#ifdef SIGMA_FUZZ
    track_file(f, 1);
#endif
    return f;
}

int xfread_exact(void *buf, size_t n, FILE *f, const char *name, uint64_t offset)
{
    size_t got = fread(buf, 1, n, f);
    if (got == n) return 1;
    if (ferror(f)) die("%s: read error at byte %llu: %s", name, (unsigned long long)(offset + got), strerror(errno));
    if (got == 0) return 0;
    die("%s: truncated at byte %llu (wanted %zu more bytes)", name, (unsigned long long)(offset + got), n - got);
}

size_t xfread_some(void *buf, size_t n, FILE *f, const char *name)
{
    size_t got = fread(buf, 1, n, f);
    if (got < n && ferror(f)) die("%s: read error: %s", name, strerror(errno));
    return got;
}

void xfwrite(const void *buf, size_t n, FILE *f, const char *name)
{
    if (n && fwrite(buf, 1, n, f) != n) die("%s: write error: %s", name, strerror(errno));
}

void xfflush(FILE *f, const char *name)
{
    if (fflush(f) != 0) die("%s: write error: %s", name, strerror(errno));
}

void xfclose(FILE *f, const char *name)
{
    if (f == stdin) return;
    if (f == stdout) { xfflush(f, name); return; }
#ifdef SIGMA_FUZZ
    track_file(f, 0);
#endif
    if (fclose(f) != 0) die("%s: error closing: %s", name, strerror(errno));
}

char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = xfopen(path, "rb");
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t want = cap - n - 1;
        if (max - n < SIZE_MAX && want > max - n + 1) want = max - n + 1;   /* one byte past max says it is longer */
        size_t got = xfread_some(buf + n, want, f, path);
        if (got == 0) break;
        n += got;
        if (n > max) {
            xfclose(f, path);
            free(buf);
            die("%s: larger than %zu bytes, the most this reader takes", path, max);
        }
    }
    xfclose(f, path);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *dir_member(const char *dir, const char *name, const char *what)
{
    int plain = *name && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/');
    for (const char *p = name; plain && *p; p++) plain = (unsigned char)*p >= 0x20 && *p != 0x7f;
    if (!plain) die("%s: \"%s\" is not a plain file name inside %s", what, name, dir);
    char *path = xasprintf("%s/%s", dir, name);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* a link is followed only while it stays inside the directory */
        char *real_dir = realpath(dir, NULL), *real = realpath(path, NULL);
        size_t n = real_dir ? strlen(real_dir) : 0;
        int inside = real_dir && real && !strncmp(real, real_dir, n) && (real[n] == '/' || (n == 1 && real[0] == '/'));
        if (!inside)
            die("%s: %s is a symbolic link out of %s (%s); sigma reads only files inside the directory it is given", what,
                path, dir, real ? real : "a missing file");
        free(real_dir);
        free(real);
    }
    return path;
}

int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

void xmkdir(const char *path)
{
    if (mkdir(path, 0777) != 0) die("cannot create directory %s: %s", path, strerror(errno));
}

/* Removes NAME under dirfd and all it holds without following links, with
 * system calls only (no allocation): it is safe in a signal handler, which
 * removes a temporary directory on SIGTERM. Entries are listed again after
 * each pass that removed something, since removing while reading a
 * directory may skip entries. */
static int remove_at(int dirfd, const char *name, int depth)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 1;
    if ((errno != EISDIR && errno != EPERM) || depth > 32) return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    for (int removed = 1; removed;) {
        removed = 0;
        char buf[2048] __attribute__((aligned(8)));
        ssize_t n;
        lseek(fd, 0, SEEK_SET);
        while ((n = getdents64(fd, buf, sizeof buf)) > 0) {
            for (ssize_t at = 0; at < n;) {
                struct dirent64 *e = (struct dirent64 *)(void *)(buf + at);
                at += e->d_reclen;
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                if (remove_at(fd, e->d_name, depth + 1)) removed = 1;
            }
        }
        if (n < 0) break;
    }
    close(fd);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0;
}

void remove_tree(const char *path)
{
    remove_at(AT_FDCWD, path, 0);
}

void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("cannot open %s to sync it: %s", path, strerror(errno));
    /* Some file systems refuse fsync on a directory (EINVAL): that is not a
     * lost write, so only real I/O errors are fatal. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        die("cannot sync %s: %s", path, strerror(errno));
    close(fd);
}
