/* Training plumbing: the data loader (coverage of an epoch, determinism,
 * exact resume), the learning-rate and top-k schedules. */
#include "../tap.h"
#include "base/base.h"
#include "data/shard.h"
#include "model/adamw.h"
#include "train/ckpt.h"
#include "train/loader.h"
#include "train/schedule.h"

#include <math.h>
#include "base/threads.h"
#include <stdlib.h>
#include <string.h>

/* A shard set whose token at global position p is p % 65521, so a sequence
 * tells where it came from. */
static void make_set(const char *dir, uint64_t n_tokens, uint64_t shard_tokens)
{
    TokHeader h = {.vocab_size = 65521};
    ShardOptions o = {.shard_tokens = shard_tokens, .level = 1, .seed = 0, .val_fraction = 0, .val_docs = UINT64_MAX};
    ShardWriter *w = shardwriter_open(dir, 0, &h, &o);
    for (uint64_t p = 0; p < n_tokens; p++) {
        uint32_t t = (uint32_t)(p % 65521);
        shardwriter_put(w, &t, 1);
        if (p % 1000 == 999 || p + 1 == n_tokens) shardwriter_end_doc(w);
    }
    shardwriter_close(w);
}

static void test_loader(const char *tmp)
{
    char *dir = xasprintf("%s/set", tmp);
    const uint32_t T = 16;
    make_set(dir, 20000, 3000);   /* 7 shards: 6 of 3000 tokens, one of 2000 */
    ShardSet set;
    shardset_open(&set, dir);
    Loader l;
    loader_init(&l, &set, SPLIT_TRAIN, T, 42, 1, 2);
    uint64_t n = l.n_sequences;
    ok(n == 6 * shard_sequences(3000, T) + shard_sequences(2000, T), "sequence count (%llu)", (unsigned long long)n);

    uint32_t *in = xmalloc(n * T * sizeof(uint32_t)), *tg = xmalloc(3 * n * T * sizeof(uint32_t));
    loader_next(&l, in, tg, NULL, NULL, n);
    int shifted = 1, ordered = 1;
    for (uint64_t i = 0; i < n * T; i++) shifted &= tg[i] == (in[i] + 1) % 65521;
    /* each sequence is T+1 consecutive tokens starting at a multiple of T within its shard */
    char *seen = xcalloc(20000, 1);
    int once = 1, contiguous = 1;
    for (uint64_t s = 0; s < n; s++) {
        uint32_t first = in[s * T];
        for (uint32_t t = 1; t < T; t++) contiguous &= in[s * T + t] == first + t;
        once &= !seen[first];
        seen[first] = 1;
        if (s && in[s * T] < in[(s - 1) * T]) ordered = 0;
    }
    ok(shifted, "targets are the inputs shifted by one token");
    ok(contiguous && once, "an epoch yields every sequence exactly once");
    ok(!ordered, "and shuffled");

    /* the same seed gives the same order; a position resumes exactly */
    uint32_t *a = xmalloc(3 * n * T * sizeof(uint32_t)), *b = xmalloc(3 * n * T * sizeof(uint32_t));
    Loader l2;
    loader_init(&l2, &set, SPLIT_TRAIN, T, 42, 1, 2);
    loader_next(&l2, a, tg, NULL, NULL, n);
    ok(!memcmp(a, in, n * T * sizeof(uint32_t)), "same seed, same order");
    loader_seek(&l2, (LoaderPos){0, 0, 0}, "test");
    loader_next(&l2, a, tg, NULL, NULL, 3 * n);   /* three epochs in one go */
    Loader l3;
    loader_init(&l3, &set, SPLIT_TRAIN, T, 42, 1, 2);
    size_t done = 0, steps[] = {5, 1, 123, 7, 400, 1000000};
    int exact = 1;
    for (size_t i = 0; done < 3 * n; i++) {
        size_t k = steps[i % 6] < 3 * n - done ? steps[i % 6] : 3 * n - done;
        LoaderPos pos = l3.pos;
        loader_free(&l3);   /* a new process: only the position survives */
        loader_init(&l3, &set, SPLIT_TRAIN, T, 42, 1, 2);
        loader_seek(&l3, pos, "test");
        loader_next(&l3, b + done * T, tg, NULL, NULL, k);
        done += k;
    }
    exact = !memcmp(a, b, 3 * n * T * sizeof(uint32_t));
    ok(exact, "resuming from saved positions gives the same sequences over three epochs");
    ok(memcmp(a, a + n * T, n * T * sizeof(uint32_t)) != 0, "each epoch has its own order");
    Loader l4;
    loader_init(&l4, &set, SPLIT_TRAIN, T, 43, 1, 2);
    loader_next(&l4, b, tg, NULL, NULL, n);
    ok(memcmp(a, b, n * T * sizeof(uint32_t)) != 0, "another seed, another order");
    Loader lv;
    loader_init(&lv, &set, SPLIT_TRAIN, T, 42, 0, 1);
    loader_next(&lv, b, tg, NULL, NULL, 4);
    ok(b[0] == 0 && b[T] == T && b[2 * T] == 2 * T, "unshuffled (validation) reads in order");
    loader_free(&l); loader_free(&l2); loader_free(&l3); loader_free(&l4); loader_free(&lv);
    free(in); free(tg); free(a); free(b); free(seen);
    shardset_free(&set);
    free(dir);
}

static void test_lr(void)
{
    LrSchedule s = {.kind = LR_WSD, .max_lr = 1.0, .min_lr = 0.1, .warmup = 10, .total = 100, .decay_fraction = 0.2};
    ok(fabs(lr_at(&s, 0) - 0.1) < 1e-12 && fabs(lr_at(&s, 9) - 1.0) < 1e-12, "warmup rises linearly to max");
    ok(lr_at(&s, 50) == 1.0 && lr_at(&s, 79) == 1.0, "WSD: stable");
    ok(lr_at(&s, 80) < 1.0 && fabs(lr_at(&s, 99) - 0.1) < 1e-12, "WSD: decays over the last 20%% to min");
    s.kind = LR_COSINE;
    ok(fabs(lr_at(&s, 10) - 1.0) < 1e-12 && fabs(lr_at(&s, 55) - 0.55) < 1e-9 && fabs(lr_at(&s, 100) - 0.1) < 1e-12,
       "cosine: max, midpoint, min");
}

static void test_topk(void)
{
    TopkSchedule s;
    char err[256];
    ok(topk_parse(&s, "0:8,8,8,8,1...; 2000:1...", 8, 96, err, sizeof err) == 0, "parse the report's schedule");
    const int *k0 = topk_at(&s, 0), *k1 = topk_at(&s, 1999), *k2 = topk_at(&s, 2000);
    ok(k0[0] == 8 && k0[3] == 8 && k0[4] == 1 && k0[7] == 1 && k1[0] == 8 && k2[0] == 1 && k2[7] == 1,
       "k per layer before and after the switch");
    char *f = topk_format(&s);
    ok(!strcmp(f, "0:8,8,8,8,1...; 2000:1..."), "canonical form round trips (%s)", f);
    free(f);
    topk_free(&s);
    ok(topk_parse(&s, "0:2,2", 3, 96, err, sizeof err) != 0 && strstr(err, "2 values for 3 layers"), "too few values: %s", err);
    ok(topk_parse(&s, "0:97...", 3, 96, err, sizeof err) != 0 && strstr(err, "outside 1..96"), "k above the experts: %s", err);
    ok(topk_parse(&s, "5:1...", 3, 96, err, sizeof err) != 0 && strstr(err, "step 0"), "must start at 0: %s", err);
    ok(topk_parse(&s, "0:1...;0:2...", 3, 96, err, sizeof err) != 0 && strstr(err, "increase"), "steps increase: %s", err);
    ok(topk_parse(&s, "0:1,x", 3, 96, err, sizeof err) != 0, "garbage: %s", err);
}

/* AdamW against the formula evaluated in double, step by step. */
static void test_adamw(void)
{
    enum { N = 1000, STEPS = 5 };
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double pd[N], md[N] = {0}, vd[N] = {0};
    uint64_t st = 7;
    for (int i = 0; i < N; i++) { pd[i] = p[i] = (float)((double)(splitmix64(&st) >> 11) * 0x1.0p-53 - 0.5); }
    double worst = 0;
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)((double)(splitmix64(&st) >> 11) * 0x1.0p-53 - 0.5) * 0.01f;
        AdamWStep s = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 0.5f, .t = (uint64_t)t};
        adamw_update(p, m, v, g, N, &s, 1);
        for (int i = 0; i < N; i++) {
            double gg = (double)g[i] * 0.5;
            md[i] = 0.9 * md[i] + 0.1 * gg;
            vd[i] = 0.95 * vd[i] + 0.05 * gg * gg;
            double mh = md[i] / (1 - pow(0.9, t)), vh = vd[i] / (1 - pow(0.95, t));
            pd[i] -= 1e-3 * (mh / (sqrt(vh) + 1e-8) + 0.1 * pd[i]);
            double d = fabs(pd[i] - p[i]);
            worst = d > worst ? d : worst;
        }
    }
    ok(worst < 1e-6, "AdamW with weight decay and gradient scale follows the formula (max error %.2g)", worst);
    float p2 = 1.0f, m2 = 0, v2 = 0, g2 = 0;
    AdamWStep s = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 1, .t = 1};
    adamw_update(&p2, &m2, &v2, &g2, 1, &s, 0);
    ok(p2 == 1.0f, "no decay where the flag is off");

    float *big = xmalloc(1000003 * sizeof(float));
    for (size_t i = 0; i < 1000003; i++) big[i] = (float)((double)(splitmix64(&st) >> 11) * 0x1.0p-53 - 0.5);
    omp_set_num_threads(1);
    double n1 = l2_norm(big, 1000003);
    omp_set_num_threads(2);
    double n2 = l2_norm(big, 1000003);
    double ref = 0;
    for (size_t i = 0; i < 1000003; i++) ref += (double)big[i] * big[i];
    ok(n1 == n2 && fabs(n1 - sqrt(ref)) < 1e-9 * n1, "gradient norm: right, and the same bits on 1 and 2 threads");
    big[5] = NAN;
    ok(isnan(l2_norm(big, 1000003)), "a NaN gradient gives a NaN norm");
    free(big);
    ok(clip_scale(2.0, 1.0) == 0.5f && clip_scale(0.5, 1.0) == 1.0f && clip_scale(5.0, 0) == 1.0f, "clipping scale");
}

static void test_ckpt(const char *tmp)
{
    char *out = xasprintf("%s/run", tmp);
    ok(ckpt_resolve(out) == NULL, "no checkpoint in a new run directory");
    for (uint64_t step = 100; step <= 500; step += 100) {
        AtomicDir ad;
        ckpt_begin(&ad, out, step);
        char *f = atomic_dir_file(&ad, "config.json");
        write_file_atomic(f, "{}\n", 3);
        free(f);
        ckpt_commit(&ad, out, step, 2);
    }
    char *dir = ckpt_resolve(out);
    char *want = xasprintf("%s/step-00000500", out), *kept = xasprintf("%s/step-00000400", out), *gone = xasprintf("%s/step-00000300", out);
    ok(dir && !strcmp(dir, want), "latest names the newest checkpoint");
    ok(is_dir(kept) && !path_exists(gone), "only the newest --keep are kept");
    char *direct = ckpt_resolve(kept);
    ok(direct && !strcmp(direct, kept), "a checkpoint directory resolves to itself");
    free(dir); free(want); free(kept); free(gone); free(direct); free(out);
}

int main(void)
{
    sg_init("test_train");
    char tmpl[] = "/tmp/sigma-unit.XXXXXX";
    char *tmp = mkdtemp(tmpl);
    if (!tmp) BUG("mkdtemp");
    test_loader(tmp);
    test_lr();
    test_topk();
    test_adamw();
    test_ckpt(tmp);
    remove_tree(tmp);
    return tap_done();
}
