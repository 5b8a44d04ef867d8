/* Training data loader; see loader.h. */
#include "train/loader.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Uniform in [0, n) without modulo bias (Lemire's method would do too; the
 * rejection loop is simpler and n is far below 2^64). */
static uint64_t below(uint64_t *state, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = splitmix64(state); while (r >= limit);
    return r % n;
}

void shuffle_u64(uint64_t *a, size_t n, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)below(&st, i);
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t in[2] = {a, b};
    return XXH3_64bits_withSeed(in, sizeof in, seed);
}

uint64_t shard_sequences(uint64_t n_tokens, uint32_t T)
{
    return n_tokens > T ? (n_tokens - 1) / T : 0;
}

static size_t n_shards(const Loader *l) { return l->rows ? 1 : l->set->split[l->split].n_shards; }
static size_t n_groups(const Loader *l) { return (n_shards(l) + l->group_shards - 1) / l->group_shards; }

static void drop_group(Loader *l)
{
    for (size_t i = 0; i < l->n_loaded; i++) shard_free(&l->loaded[i]);
    l->n_loaded = 0;
    l->have_group = 0;
}

/* Rows made beforehand: one group, the epoch's permutation of them. */
static void list_rows(Loader *l)
{
    l->group_seqs = xrealloc(l->group_seqs, l->n_sequences * sizeof(uint64_t));
    l->n_group_seqs = l->n_sequences;
    for (uint64_t i = 0; i < l->n_sequences; i++) l->group_seqs[i] = i;
    if (l->shuffle) shuffle_u64(l->group_seqs, l->n_group_seqs, derive_seed(l->seed, l->pos.epoch, 0));
    l->have_group = 1;
}

/* Loads the shards of pos.group in pos.epoch and lists its sequences. */
static void load_group(Loader *l)
{
    drop_group(l);
    if (l->rows) { list_rows(l); return; }
    size_t ns = n_shards(l);
    uint64_t *order = xmalloc(ns * sizeof(uint64_t));
    for (size_t i = 0; i < ns; i++) order[i] = i;
    if (l->shuffle) shuffle_u64(order, ns, derive_seed(l->seed, l->pos.epoch, UINT64_MAX));
    size_t first = l->pos.group * l->group_shards;
    size_t last = first + l->group_shards < ns ? first + l->group_shards : ns;
    uint64_t total = 0;
    for (size_t i = first; i < last; i++) total += shard_sequences(l->set->split[l->split].shards[order[i]].tokens, l->T);
    l->group_seqs = xrealloc(l->group_seqs, (total ? total : 1) * sizeof(uint64_t));
    l->n_group_seqs = 0;
    for (size_t i = first; i < last; i++) {
        Shard *s = &l->loaded[l->n_loaded];
        shard_load(s, l->set, l->split, (size_t)order[i]);
        uint64_t n = shard_sequences(s->n_tokens, l->T);
        for (uint64_t q = 0; q < n; q++) l->group_seqs[l->n_group_seqs++] = (uint64_t)l->n_loaded << 40 | q;
        l->n_loaded++;
    }
    if (l->shuffle) shuffle_u64(l->group_seqs, l->n_group_seqs, derive_seed(l->seed, l->pos.epoch, l->pos.group));
    free(order);
    l->have_group = 1;
}

void loader_init(Loader *l, const ShardSet *set, int split, uint32_t T, uint64_t seed, int shuffle, size_t group_shards)
{
    memset(l, 0, sizeof *l);
    l->set = set;
    l->split = split;
    l->T = T;
    l->seed = seed;
    l->shuffle = shuffle;
    l->group_shards = group_shards ? group_shards : 1;
    const SplitInfo *si = &set->split[split];
    for (size_t i = 0; i < si->n_shards; i++) l->n_sequences += shard_sequences(si->shards[i].tokens, T);
    if (l->n_sequences == 0)
        die("%s: the %s split has no sequence of %u tokens (its shards hold %llu tokens)", set->dir, split_names[split],
            T + 1, (unsigned long long)si->tokens);
    if (si->n_shards >= (1u << 20) || set->opt.shard_tokens >= (1ull << 40)) die("%s: too many shards or tokens per shard", set->dir);
    l->loaded = xcalloc(l->group_shards, sizeof(Shard));
}

void loader_init_rows(Loader *l, const ChatRows *rows, uint64_t seed, int shuffle)
{
    memset(l, 0, sizeof *l);
    if (rows->n_rows == 0) BUG("a loader over no rows");
    l->rows = rows;
    l->T = (uint32_t)rows->T;
    l->seed = seed;
    l->shuffle = shuffle;
    l->group_shards = 1;
    l->n_sequences = rows->n_rows;
}

uint64_t loader_groups(const Loader *l) { return n_groups(l); }

void loader_seek(Loader *l, LoaderPos pos, const char *what)
{
    if (pos.group >= n_groups(l))
        die("%s: group %llu, but %s%s has %zu groups", what, (unsigned long long)pos.group,
            l->rows ? "the conversations' rows" : "the split ", l->rows ? "" : split_names[l->split], n_groups(l));
    l->pos = pos;
    load_group(l);
    if (pos.index > l->n_group_seqs)
        die("%s: index %llu, but group %llu of epoch %llu has %llu sequences", what, (unsigned long long)pos.index,
            (unsigned long long)pos.group, (unsigned long long)pos.epoch, (unsigned long long)l->n_group_seqs);
}

void loader_next(Loader *l, uint32_t *inputs, uint32_t *targets, float *mask, int *pos, size_t B)
{
    for (size_t b = 0; b < B; b++) {
        while (!l->have_group || l->pos.index >= l->n_group_seqs) {
            if (l->have_group) {   /* move on: next group, or next epoch */
                l->pos.index = 0;
                if (++l->pos.group == n_groups(l)) { l->pos.group = 0; l->pos.epoch++; }
            }
            load_group(l);
        }
        uint64_t id = l->group_seqs[l->pos.index++];
        if (l->rows) {
            size_t at = (size_t)id * l->T, n = l->T;
            memcpy(inputs + b * n, l->rows->inputs + at, n * sizeof(uint32_t));
            memcpy(targets + b * n, l->rows->targets + at, n * sizeof(uint32_t));
            if (mask) memcpy(mask + b * n, l->rows->mask + at, n * sizeof(float));
            if (pos) memcpy(pos + b * n, l->rows->pos + at, n * sizeof(int));
            continue;
        }
        const Shard *s = &l->loaded[id >> 40];
        const uint32_t *seq = s->tokens + (id & ((1ull << 40) - 1)) * l->T;
        memcpy(inputs + b * l->T, seq, l->T * sizeof(uint32_t));
        memcpy(targets + b * l->T, seq + 1, l->T * sizeof(uint32_t));
    }
}

void loader_free(Loader *l)
{
    drop_group(l);
    free(l->loaded);   /* NULL over rows */
    free(l->group_seqs);
    memset(l, 0, sizeof *l);
}
