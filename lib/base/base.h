/* libsigma base: errors that name file and line, checked allocation and I/O,
 * logging and progress on stderr, atomic files and directories, the command
 * line's conventions and numbers, and the JSON helpers (cJSON underneath).
 * Every tool calls sg_init(argv[0]) first so messages carry its name. */
#ifndef SIGMA_BASE_H
#define SIGMA_BASE_H

#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define SIGMA_VERSION "0.1.0"

#if defined(__GNUC__)
#define SG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define SG_NORETURN __attribute__((noreturn))
#else
#define SG_PRINTF(a, b)
#define SG_NORETURN
#endif

/* ---- program identity, verbosity ------------------------------------- */
extern const char *sg_prog;   /* basename of argv[0], prefix of every message */
extern int sg_quiet;          /* -q: no progress, no info */
extern int sg_verbose;        /* -v: more info */
void sg_init(const char *argv0);

/* ---- errors ---------------------------------------------------------- */
/* "prog: message" on stderr, then exit(1). Cleanup hooks run first, so a
 * tool can remove its temporary output before it dies. */
SG_NORETURN void die(const char *fmt, ...) SG_PRINTF(1, 2);
/* One line, "prog: message (see prog --help)", then exit(2). */
SG_NORETURN void usage_error(const char *fmt, ...) SG_PRINTF(1, 2);
/* An error that names the source place, "prog: error at f.c:12: ...":
 * for what no user input explains (a failed CUDA, cuBLAS or allocation
 * call) and, through BUG, for a bug in sigma itself. */
SG_NORETURN void die_at(const char *file, int line, const char *fmt, ...) SG_PRINTF(3, 4);
#define BUG(...) die_at(__FILE__, __LINE__, __VA_ARGS__)
#define SG_ASSERT(c) do { if (!(c)) die_at(__FILE__, __LINE__, "assertion failed: %s", #c); } while (0)
void warn(const char *fmt, ...) SG_PRINTF(1, 2);
/* A line of a line-oriented input (JSON Lines of items, of conversations)
 * and what to do with one that cannot be used. */
typedef struct {
    const char *path;
    uint64_t line;             /* the line being read, from 1 */
    int skip_bad;              /* count bad lines instead of dying */
    uint64_t skipped;
} LineSource;
/* Dies "PATH, line N: MSG (--skip-bad skips such lines)", or with
 * skip_bad counts the line. Returns 0, for `return line_bad(...)`. */
int line_bad(LineSource *src, const char *fmt, ...) SG_PRINTF(2, 3);
void info(const char *fmt, ...) SG_PRINTF(1, 2);      /* silent under -q */
void verbose(const char *fmt, ...) SG_PRINTF(1, 2);   /* only with -v */

#ifdef SIGMA_FUZZ
#include <setjmp.h>
extern jmp_buf *sg_fuzz_die;   /* the fuzz build only: where die() returns to (die.c) */
void sg_fuzz_close_files(void); /* closes what xfopen opened and a die left open (io.c) */
void sg_fuzz_track_file(FILE *f, int open);   /* a FILE opened (1) or closed (0) elsewhere */
#endif

/* Register a function run (last registered first) by die() before exit,
 * and on SIGINT, SIGTERM and SIGHUP: it may use system calls only. */
void sg_on_die(void (*fn)(void *), void *arg);
void sg_on_die_remove(void (*fn)(void *), void *arg);

/* ---- checked allocation (die names the caller's file and line) ------- */
void *xmalloc_(size_t n, const char *file, int line);
void *xcalloc_(size_t n, size_t size, const char *file, int line);
void *xrealloc_(void *p, size_t n, const char *file, int line);
char *xstrdup_(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_((s), __FILE__, __LINE__)
char *xasprintf(const char *fmt, ...) SG_PRINTF(1, 2);

/* ---- checked stdio: errors name the file given by `name` ------------- */
/* "-" means stdin (mode r) or stdout (mode w). */
FILE *xfopen(const char *path, const char *mode);
/* Reads exactly n bytes; returns 0 at a clean EOF before any byte, else
 * dies naming `name` and the byte offset when the file ends early. */
int xfread_exact(void *buf, size_t n, FILE *f, const char *name, uint64_t offset);
size_t xfread_some(void *buf, size_t n, FILE *f, const char *name);
void xfwrite(const void *buf, size_t n, FILE *f, const char *name);
void xfflush(FILE *f, const char *name);
void xfclose(FILE *f, const char *name);   /* never closes stdin/stdout; flushes them */
/* Whole file into memory (NUL-terminated for convenience); *len gets size.
 * A file longer than max bytes is refused ("PATH: larger than MAX bytes")
 * before more is read: /dev/zero or a runaway file cannot fill memory. */
char *read_file(const char *path, size_t max, size_t *len);
/* The path of NAME inside directory DIR, for a name that a file (a manifest,
 * an index, a checkpoint) gives: refused, naming `what`, when NAME is not
 * one plain file name (empty, ".", "..", a '/', a control byte) or is a
 * symbolic link that leads out of DIR. Caller frees. */
char *dir_member(const char *dir, const char *name, const char *what);
int is_dir(const char *path);
int path_exists(const char *path);
/* rm -rf for our own temporary directories only (no symlink following). */
void remove_tree(const char *path);
void xmkdir(const char *path);
void fsync_path(const char *path);   /* fsync a file or directory by path */

/* ---- zstd files (zfile.c) --------------------------------------------- */
/* Whether PATH names a zstd-compressed file: its name ends in ".zst". */
int is_zst_path(const char *path);
/* xfopen(path, "rb"), decompressed on the fly when is_zst_path(path): a
 * corrupt or cut frame dies naming the file and the compressed offset.
 * Close it with xfclose. */
FILE *xfopen_read(const char *path);
/* A stream that compresses what is written to it into `raw` as one zstd
 * frame (with its checksum) at `level`; fclose of it ends the frame and
 * flushes `raw`, which stays open (commit or close it after). Close it
 * with xfclose. */
FILE *zstd_writer(FILE *raw, const char *name, int level);

/* ---- atomic outputs --------------------------------------------------- */
/* A file written under a temporary name beside `path`, then fflush, fsync,
 * rename and fsync of the directory. Until commit, die() (and SIGINT,
 * SIGTERM, SIGHUP) removes it. Only a regular file or a new path is
 * replaced so: a character device, a FIFO or a socket (/dev/null) and a
 * descriptor named through /dev/stdout, /dev/fd/N or /proc are written
 * directly, and a symbolic link is followed to the file it names. */
typedef struct {
    char *path;      /* final name */
    char *tmp;       /* temporary name beside it; NULL when written directly */
    FILE *f;
} AtomicFile;
void atomic_file_open(AtomicFile *af, const char *path);
void atomic_file_commit(AtomicFile *af);
void atomic_file_abort(AtomicFile *af);
/* Write a whole buffer to `path` atomically. */
void write_file_atomic(const char *path, const void *buf, size_t n);

/* A directory built under a temporary name beside `path` and renamed into
 * place when complete. An existing `path` is refused unless force; with
 * force it is replaced only at commit, so a failure keeps the old one.
 * The temporary directory is flock(2)ed while it is written: a temporary
 * directory of the same `path` that no process holds (its writer was
 * killed) is removed by the next atomic_dir_begin. */
typedef struct {
    char *path;
    char *tmp;
    int force;
    int lock_fd;     /* the temporary directory, locked */
} AtomicDir;
void atomic_dir_begin(AtomicDir *ad, const char *path, int force);
char *atomic_dir_file(const AtomicDir *ad, const char *name); /* tmp/name, caller frees */
void atomic_dir_commit(AtomicDir *ad);
void atomic_dir_abort(AtomicDir *ad);

/* One writer per directory: flock(2) on DIR/.lock, which holds the pid of
 * the process that has it. Dies "DIR is in use by process PID (...)" when
 * another process holds it. The lock lasts until the process exits. */
void dir_lock(const char *dir);

/* ---- checked sizes ------------------------------------------------------ */
/* a * b into *out; returns 0 (and leaves *out alone) when it overflows. */
int mul_u64(uint64_t a, uint64_t b, uint64_t *out);
/* a * b, or die "WHAT: A x B is too large" when it overflows. */
uint64_t mul_or_die(uint64_t a, uint64_t b, const char *what);

/* ---- progress on stderr ---------------------------------------------- */
/* On a terminal the line is redrawn at most every 0.1 s; otherwise a line
 * is printed every `interval` seconds. Silent under -q. */
typedef struct {
    double start, last;
    double interval;
    int tty;
    int drawn;
} Progress;
void progress_init(Progress *p, double interval);
/* A rate over the last RATE_WINDOW intervals between marks (say, steps):
 * what a progress line shows, so that one slow interval (a checkpoint
 * save) neither reads as the whole speed nor hides in a per-interval figure. */
enum { RATE_WINDOW = 20 };
typedef struct {
    double at[RATE_WINDOW + 1];   /* the times of the last marks (a ring) */
    uint64_t n;                   /* marks so far */
} RateWindow;
void rate_mark(RateWindow *r, double now);
/* units_per_interval over the window's time per second; 0 before two marks */
double rate_per_second(const RateWindow *r, double units_per_interval);
void progress_update(Progress *p, const char *fmt, ...) SG_PRINTF(2, 3);
void progress_done(Progress *p, const char *fmt, ...) SG_PRINTF(2, 3);
double now_seconds(void);   /* monotonic clock */

/* ---- the command line (cli.c): the conventions of sigma(1) ------------ */
/* Every tool ends its longopts with CLI_COMMON_OPTIONS and parses them with
 * cli_getopt, which handles -q, -v, -h (help(stdout), exit 0) and --version
 * itself and returns the tool's own options, then -1. An unknown or
 * ambiguous option, a missing argument or one given to an option that
 * takes none is one usage error line naming it (exit 2). `shortopts` holds
 * the tool's own letters only ("o:t:f"). */
#define CLI_VERSION 0x10000
#define CLI_COMMON_OPTIONS                                                                 \
    {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},                     \
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, CLI_VERSION}, {0, 0, 0, 0}
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               void (*help)(FILE *out));
/* The lines that end every tool's --help: -q, -v, -h, --version, then
 * "See sigma-TOOL(1)." */
void cli_help_end(FILE *out);

/* A tool with subcommands describes which options each takes; after
 * parsing, cli_check_command refuses (exit 2) any option given that `cmd`
 * does not take, naming the subcommands it belongs to. The common options
 * go with every subcommand. */
typedef struct {
    const char *what;      /* the subcommand in messages: "encode", "writing a shard set" */
    const char *options;   /* the long names of the options it takes, space-separated */
} CliCommand;
void cli_check_command(const CliCommand *cmd, const CliCommand *all, size_t n);

/* ---- command-line numbers: errors name the option -------------------- */
uint64_t parse_u64(const char *opt, const char *arg, uint64_t min, uint64_t max);
double parse_double(const char *opt, const char *arg, double min, double max);
/* "64M", "1e8", "100k" token or byte counts: k/M/G suffixes are powers of 1000 */
uint64_t parse_count(const char *opt, const char *arg, uint64_t min, uint64_t max);

/* ---- statistics: benchmarks' scores ---------------------------------------- */
/* The mean of x[n] and the standard error of that mean (NaN for n < 2). */
void mean_stderr(const double *x, size_t n, double *mean, double *se);

/* ---- randomness ----------------------------------------------------------- */
/* splitmix64: the generator behind every seeded choice (data order, weight
 * initialization, sampling); the state is one u64, saved as it is. */
uint64_t splitmix64(uint64_t *state);

/* ---- hashing ------------------------------------------------------------ */
/* XXH3 (libxxhash): 64-bit for checksums; hex form is 16 lowercase digits. */
uint64_t hash64(const void *data, size_t n, uint64_t seed);
/* hash64(whole file, 0), read in blocks: a checkpoint's weights may be
 * larger than memory. */
uint64_t file_hash64(const char *path);
void hex64(char out[17], uint64_t h);
int parse_hex64(const char *s, uint64_t *out);

#endif
