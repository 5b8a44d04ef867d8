/* The host's half of a key-value cache: sizes and the plan of a step; see
 * kvcache.h. The devices compute with it (model.c, cuda/gpu_kv.cu). */
#include "model/kvcache.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

size_t kv_cache_bytes(const Config *c, int rows, int max_len)
{
    uint64_t per_token = (uint64_t)c->n_layers * c->n_kv_heads * c->head_dim * 2 * sizeof(float);
    return (size_t)mul_or_die(mul_or_die(per_token, (uint64_t)rows, "the key-value cache"), (uint64_t)max_len, "the key-value cache");
}

void kv_cache_init(KvCache *kv, const Config *c, int rows, int max_len, int max_step)
{
    if (rows < 1 || max_len < 1 || max_step < 1 || max_len > MODEL_MAX_SEQ)
        BUG("a cache of %d rows of %d tokens, steps of %d", rows, max_len, max_step);
    memset(kv, 0, sizeof *kv);
    kv->rows = rows;
    kv->max_len = max_len;
    kv->max_step = max_step;
    kv->len = xcalloc((size_t)rows, sizeof(int));
    kv->mark = xcalloc((size_t)rows, sizeof(int));
    kv->bytes = kv_cache_bytes(c, rows, max_len);
}

void kv_cache_free_host(KvCache *kv)
{
    free(kv->len);
    free(kv->mark);
    kv->len = kv->mark = NULL;
}

int kv_plan(KvCache *kv, const int *rows, int n, int *pos, int *last)
{
    if (n < 1 || n > kv->max_step) BUG("a step of %d tokens, the cache takes 1 to %d", n, kv->max_step);
    kv->step++;
    int groups = 0;
    for (int i = 0; i < n; i++) {
        int r = rows[i];
        if (r < 0 || r >= kv->rows) BUG("token %d of a step goes to row %d of %d", i, r, kv->rows);
        int continues = i > 0 && rows[i - 1] == r;
        if (!continues) {
            if (kv->mark[r] == (int)kv->step) BUG("row %d comes twice in one step (a row's tokens must be contiguous)", r);
            kv->mark[r] = (int)kv->step;
            groups++;
        }
        if (kv->len[r] >= kv->max_len) BUG("row %d is full (%d tokens)", r, kv->max_len);
        pos[i] = kv->len[r]++;
        if (i + 1 == n || rows[i + 1] != r) last[groups - 1] = i;
    }
    return groups;
}
