/* See common.h. */
#include "common.h"
#include "base/base.h"

#include <sanitizer/allocator_interface.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void remove_dir(void) { remove_tree(dir); }

const char *fz_dir(void)
{
    if (!dir[0]) {
        /* in memory where there is /dev/shm: a file is written and read a
         * few thousand times a second, which a disk would make the slowest part */
        snprintf(dir, sizeof dir, "%s/sigma-fuzz.XXXXXX", is_dir("/dev/shm") ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir)) abort();
        atexit(remove_dir);
        sg_init("fuzz");
        sg_quiet = 1;
    }
    return dir;
}

char *fz_file(const char *name, const uint8_t *data, size_t size)
{
    char *path = xasprintf("%s/%s", fz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

/* What a refused input leaves behind when die() returns here by longjmp:
 * the files it opened (closed through sg_fuzz_close_files), descriptors
 * (closed from the lowest one free before the run), and every allocation
 * made during the run and not freed, which ASan's allocator hooks record.
 * Without this, a few hundred thousand refusals fill memory. */
enum { SLOTS = 1 << 21, MAX_LIVE = 1 << 20 };   /* a hash of pointer -> place in `order` */
typedef struct { const void *p; size_t at; } Slot;
static Slot *slots;                /* mmap'ed: the hooks must not allocate */
static const void **order;         /* [n_live] the allocations of this run */
static size_t n_live;
static int tracking;

static size_t slot_of(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 43) & (SLOTS - 1); }
static size_t find(const void *p)
{
    size_t i = slot_of(p);
    while (slots[i].p && slots[i].p != p) i = (i + 1) & (SLOTS - 1);
    return i;
}

static void on_malloc(const volatile void *vp, size_t size)
{
    (void)size;
    const void *p = (const void *)vp;
    if (!tracking || !p || n_live == MAX_LIVE) return;
    size_t i = find(p);
    slots[i] = (Slot){p, n_live};
    order[n_live++] = p;
}

static void forget(size_t i)
{
    /* the last allocation takes the place of the one forgotten in `order` */
    size_t at = slots[i].at;
    const void *last = order[--n_live];
    order[at] = last;
    if (last != slots[i].p) slots[find(last)].at = at;
    /* backward-shift deletion keeps every probe chain whole */
    for (size_t j = (i + 1) & (SLOTS - 1); slots[j].p; j = (j + 1) & (SLOTS - 1)) {
        size_t home = slot_of(slots[j].p);
        if (((j - home) & (SLOTS - 1)) >= ((j - i) & (SLOTS - 1))) { slots[i] = slots[j]; i = j; }
    }
    slots[i] = (Slot){NULL, 0};
}

static void on_free(const volatile void *vp)
{
    const void *p = (const void *)vp;
    if (!tracking || !p) return;
    size_t i = find(p);
    if (slots[i].p) forget(i);
}

/* Forgets this run's allocations; frees them too after a die. */
static void end_run(int release)
{
    tracking = 0;
    while (n_live) {
        const void *p = order[n_live - 1];
        forget(find(p));
        if (release) free((void *)p);
    }
}

static int first_free_fd(void)
{
    int fd = dup(0);
    if (fd >= 0) close(fd);
    return fd;
}

int fz_run(void (*fn)(void *), void *arg)
{
    static jmp_buf jb;
    static int base = -1;
    fz_dir();
    if (!slots) {
        slots = mmap(NULL, SLOTS * sizeof *slots, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        order = mmap(NULL, MAX_LIVE * sizeof *order, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (slots == MAP_FAILED || order == MAP_FAILED) abort();
        __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
        base = first_free_fd();
    }
    if (setjmp(jb)) {
        sg_fuzz_die = NULL;
        sg_fuzz_close_files();   /* fclose frees their buffers, forgotten as it goes */
        end_run(1);
        closefrom(base);
        return 1;
    }
    tracking = 1;
    sg_fuzz_die = &jb;
    fn(arg);
    sg_fuzz_die = NULL;
    end_run(0);
    return 0;
}

Model *fz_tiny_model(void)
{
    static Model m;
    if (!m.params) {
        Config c = {.vocab_size = 257, .d_model = 8, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4,
                    .n_experts = 2, .d_expert = 4, .top_k = {1}, .rope_theta = 10000.0f, .norm_eps = 1e-6f,
                    .tie_embeddings = 0, .max_seq_len = 64};
        model_init(&m, &c, 1, 1);
    }
    return &m;
}
