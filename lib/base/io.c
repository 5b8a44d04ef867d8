/* Checked stdio and file-system helpers: every error names the file. */
#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *xfopen(const char *path, const char *mode)
{
    if (strcmp(path, "-") == 0) return mode[0] == 'r' ? stdin : stdout;
    FILE *f = fopen(path, mode);
    if (!f) die("cannot open %s: %s", path, strerror(errno));
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
    if (fclose(f) != 0) die("%s: error closing: %s", name, strerror(errno));
}

char *read_file(const char *path, size_t *len)
{
    FILE *f = xfopen(path, "rb");
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = xfread_some(buf + n, cap - n - 1, f, path);
        if (got == 0) break;
        n += got;
    }
    xfclose(f, path);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
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

void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *child = xasprintf("%s/%s", path, e->d_name);
                remove_tree(child);
                free(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
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
