/* sigma-dedup's stage files (sigma-formats(5), DEDUP STAGE FILES) through
 * the stages that read them: ddf_open on each, then exact and buckets on
 * the signature files, clusters on them all, and filter with a removal
 * list. The input is a set of files:
 *
 *   u8 mode, u8 n, then n times {u32 size, size bytes}
 *
 * With mode odd the harness first makes the checksums right (each
 * section's, the meta's, the preamble's, and the signature fingerprints in
 * the other files' shard tables) so that the fuzzer reaches what they
 * guard: the entries, their order and ranges, the union-find, the
 * removal list against an input. The seeds (tests/fuzz/seeds) are sets the
 * tools made with one band and one partition. */
#include "common.h"
#include "base/base.h"
#include "dedup/stagefile.h"
#include "dedup/stages.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

enum { MAX_FILES = 8 };

typedef struct {
    uint8_t *p;
    size_t n;
    char *path;
    uint32_t kind;
} File;

/* Walks a meta as the reader does, but forgiving: returns the offset of
 * the shard table's first entry and of the section table (0 when cut). */
static int walk_meta(const uint8_t *m, size_t n, size_t *shards_at, uint32_t *n_shards, size_t *sec_at, uint32_t *n_sec)
{
    size_t at = 4 + 8 + 40;
    if (at + 4 > n) return 0;
    at += 4 + dd_rd32(m + at);
    if (at + 4 > n) return 0;
    *n_shards = dd_rd32(m + at);
    at += 4;
    *shards_at = at;
    for (uint32_t i = 0; i < *n_shards; i++) {
        if (at + 50 > n) return 0;
        at += 50 + dd_rd16(m + at + 48);
    }
    if (at + 4 > n) return 0;
    *n_sec = dd_rd32(m + at);
    *sec_at = at + 4;
    return 1;
}

static void fix(File *f, const uint64_t *sig_fp, size_t n_sigs)
{
    if (f->n < DDF_PREAMBLE) return;
    uint8_t *p = f->p;
    dd_wr64(p + 16, f->n);
    uint64_t meta_off = dd_rd64(p + 24);
    if (meta_off < DDF_PREAMBLE || meta_off > f->n) return;
    dd_wr64(p + 32, f->n - meta_off);
    uint8_t *m = p + meta_off;
    size_t mn = f->n - meta_off, shards_at, sec_at;
    uint32_t n_shards, n_sec;
    if (walk_meta(m, mn, &shards_at, &n_shards, &sec_at, &n_sec)) {
        for (uint32_t i = 0; f->kind != DDF_SIGNATURES && i < n_shards && i < n_sigs; i++) {
            size_t at = shards_at;
            for (uint32_t k = 0; k < i; k++) at += 50 + dd_rd16(m + at + 48);
            dd_wr64(m + at + 40, sig_fp[i]);
        }
        for (uint32_t i = 0; i < n_sec && sec_at + 32 * (size_t)(i + 1) <= mn; i++) {
            uint8_t *s = m + sec_at + 32 * (size_t)i;
            uint32_t type = dd_rd32(s);
            uint64_t count = dd_rd64(s + 8), off = dd_rd64(s + 16), bytes;
            if (type < 1 || type >= SEC_TYPES || !mul_u64(count, ddf_entry_size[type], &bytes)) continue;
            if (off <= meta_off && bytes <= meta_off - off) dd_wr64(s + 24, XXH3_64bits(p + off, bytes));
        }
    }
    dd_wr64(p + 40, XXH3_64bits(m, mn));
    dd_wr64(p + 56, XXH3_64bits(p, 56));
}

typedef struct {
    char **paths;
    size_t n;
    const char *removal;
} Job;

static void open_one(void *arg)
{
    DdFile f;
    ddf_open(&f, arg, 0);
    ddf_close(&f);
}

static const DdStageOptions force = {.force = 1, .memory = 1 << 16};

static void exact(void *arg) { Job *j = arg; dd_stage_exact(j->removal, 0, j->paths, j->n, &force); }
static void buckets(void *arg) { Job *j = arg; dd_stage_buckets(j->removal, 0, j->paths, j->n, &force); }
static void clusters(void *arg) { Job *j = arg; dd_stage_clusters(j->removal, j->paths, j->n, &force); }

/* filter: an input under the name of the removal list's first shard */
static void filter(void *arg)
{
    Job *j = arg;
    DdFile f;
    ddf_open(&f, j->removal, DDF_REMOVAL);
    char *dir = xasprintf("%s/in", fz_dir());
    if (!is_dir(dir)) xmkdir(dir);
    char *in = xasprintf("%s/%s", dir, f.shards[0].name);
    static const char text[] = "{\"text\": \"one two three four five six\"}\n{\"text\": \"one two three four five six\"}\n"
                               "{\"text\": \"seven\"}\nbroken\n{\"text\": \"one two three four five six seven\"}\n";
    free(fz_file("in/x", (const uint8_t *)text, sizeof text - 1));
    char *x = xasprintf("%s/x", dir);
    rename(x, in);
    char *out = xasprintf("%s/kept.jsonl", fz_dir());
    ddf_close(&f);
    DdStageOptions o = force;
    char *rm = xasprintf("%s/removed.jsonl", fz_dir());
    o.removed = rm;
    dd_stage_filter(out, j->removal, in, &o);
    free(rm);
    free(out);
    free(x);
    free(in);
    free(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int fixing = data[0] & 1;
    size_t n = data[1] % (MAX_FILES + 1), at = 2;
    File files[MAX_FILES] = {{0}};
    size_t nf = 0;
    for (size_t i = 0; i < n && at + 4 <= size; i++) {
        size_t len = dd_rd32(data + at);
        at += 4;
        if (len > size - at) len = size - at;
        files[nf].p = malloc(len ? len : 1);
        memcpy(files[nf].p, data + at, len);
        files[nf].n = len;
        files[nf].kind = len >= 16 ? dd_rd32(files[nf].p + 12) : 0;
        at += len;
        nf++;
    }
    uint64_t sig_fp[MAX_FILES];
    size_t n_sigs = 0;
    for (int pass = 0; fixing && pass < 2; pass++)   /* signature files first: the others name their fingerprints */
        for (size_t i = 0; i < nf; i++) {
            if ((files[i].kind == DDF_SIGNATURES) != (pass == 0)) continue;
            fix(&files[i], sig_fp, n_sigs);
            if (pass == 0 && files[i].n >= DDF_PREAMBLE) sig_fp[n_sigs++] = dd_rd64(files[i].p + 56);
        }
    char *paths[MAX_FILES], *sigs[MAX_FILES], *inputs[MAX_FILES];   /* all; signature files; all but removal lists */
    size_t ns = 0, ni = 0;
    const char *removal = NULL;
    for (size_t i = 0; i < nf; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%zu", i);
        paths[i] = fz_file(name, files[i].p, files[i].n);
        if (files[i].kind == DDF_SIGNATURES) sigs[ns++] = paths[i];
        if (files[i].kind == DDF_REMOVAL) removal = paths[i];
        else inputs[ni++] = paths[i];
        fz_run(open_one, paths[i]);
    }
    char *out = xasprintf("%s/out", fz_dir());
    if (ns) {
        Job j = {sigs, ns, out};
        fz_run(exact, &j);
        fz_run(buckets, &j);
    }
    if (ni) {
        Job j = {inputs, ni, out};
        fz_run(clusters, &j);
    }
    if (removal) {
        Job j = {NULL, 0, removal};
        fz_run(filter, &j);
    }
    free(out);
    for (size_t i = 0; i < nf; i++) {
        free(paths[i]);
        free(files[i].p);
    }
    return 0;
}
