/* Errors, messages and checked allocation. */
#include "base/base.h"

#include <errno.h>
#ifdef SIGMA_FUZZ
#include <setjmp.h>
#endif
#include <signal.h>
#include <stdlib.h>
#include <string.h>

const char *sg_prog = "sigma";
int sg_quiet = 0;
int sg_verbose = 0;

static void on_fatal_signal(int sig);

void sg_init(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    sg_prog = slash ? slash + 1 : (argv0 ? argv0 : "sigma");
    /* Past a file-size limit (ulimit -f) let write() fail with EFBIG, so the
     * tool reports it and removes its temporary output, instead of dying. */
    signal(SIGXFSZ, SIG_IGN);
    /* SIGINT, SIGTERM and SIGHUP remove temporary outputs as die() does
     * (a tool may set its own handler after); an ignored one stays ignored. */
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa = {0};
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* Cleanup hooks for die(): a small fixed stack is enough (a tool holds at
 * most a few temporary outputs at once). */
#define MAX_HOOKS 16
static struct { void (*fn)(void *); void *arg; } hooks[MAX_HOOKS];
static int n_hooks;

void sg_on_die(void (*fn)(void *), void *arg)
{
    if (n_hooks == MAX_HOOKS) BUG("too many cleanup hooks");
    hooks[n_hooks].fn = fn;
    hooks[n_hooks].arg = arg;
    n_hooks++;
}

void sg_on_die_remove(void (*fn)(void *), void *arg)
{
    for (int i = n_hooks - 1; i >= 0; i--) {
        if (hooks[i].fn == fn && hooks[i].arg == arg) {
            memmove(&hooks[i], &hooks[i + 1], (size_t)(n_hooks - i - 1) * sizeof hooks[0]);
            n_hooks--;
            return;
        }
    }
}

static void run_hooks(void)
{
    while (n_hooks > 0) {   /* pop before calling: a hook that dies cannot loop */
        n_hooks--;
        hooks[n_hooks].fn(hooks[n_hooks].arg);
    }
}

/* The hooks only unlink and remove directories with system calls (see
 * remove_tree), so they may run here; then the signal's usual end, so the
 * exit status says which signal it was (130, 143). */
static void on_fatal_signal(int sig)
{
    run_hooks();
    signal(sig, SIG_DFL);
    raise(sig);
}

#ifdef SIGMA_FUZZ
/* The fuzz build (tests/fuzz): a die() on bad input is the reader doing its
 * job, so it returns to the fuzz target through sg_fuzz_die when one is
 * set; die_at (a bug, or an allocation that failed) aborts, a crash. */
jmp_buf *sg_fuzz_die;
#endif

static SG_NORETURN void run_hooks_and_exit(int status)
{
    run_hooks();
#ifdef SIGMA_FUZZ
    if (sg_fuzz_die) longjmp(*sg_fuzz_die, 1);
#endif
    exit(status);
}

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
#ifdef SIGMA_FUZZ
    if (sg_fuzz_die) return;   /* millions of refusals: silent */
#endif
    fflush(stdout);
    fprintf(stderr, "%s: %s", sg_prog, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    run_hooks_and_exit(1);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", sg_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", sg_prog);
    va_end(ap);
    run_hooks_and_exit(2);
}

void die_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error at %s:%d: ", sg_prog, file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
#ifdef SIGMA_FUZZ
    abort();
#endif
    run_hooks_and_exit(1);
}

int line_bad(LineSource *src, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!src->skip_bad) die("%s, line %llu: %s (--skip-bad skips such lines)", src->path, (unsigned long long)src->line, msg);
    src->skipped++;
    return 0;
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

void info(const char *fmt, ...)
{
    if (sg_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void verbose(const char *fmt, ...)
{
    if (!sg_verbose || sg_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void *xmalloc_(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) die_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc_(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die_at(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *xrealloc_(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) die_at(file, line, "out of memory reallocating to %zu bytes", n);
    return q;
}

char *xstrdup_(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc_(n, file, line);
    memcpy(p, s, n);
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) BUG("out of memory formatting a string");
    return s;
}
