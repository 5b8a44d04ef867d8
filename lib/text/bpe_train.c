/* Byte-level BPE training: see bpe_train.h. */
#include "text/bpe_train.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/base.h"
#include "text/pretok.h"

/* ---- a set of byte strings with a value each (pieces, token bytes) ----- */

typedef struct {
    uint8_t *pool;       /* [pool_len] the strings, back to back */
    size_t pool_len, pool_cap;
    uint64_t *off;       /* [n + 1] */
    uint64_t *value;     /* [n] */
    size_t n, cap;
    uint32_t *slots;     /* [mask + 1] index + 1; 0 = empty */
    uint64_t mask;
} StrMap;

static void strmap_init(StrMap *m)
{
    *m = (StrMap){0};
    m->mask = 1023;
    m->slots = xcalloc(m->mask + 1, sizeof *m->slots);
    m->off = xmalloc(sizeof *m->off);
    m->off[0] = 0;
}

static void strmap_free(StrMap *m)
{
    free(m->pool);
    free(m->off);
    free(m->value);
    free(m->slots);
}

static uint64_t strmap_find_slot(const StrMap *m, const uint8_t *p, size_t n, uint64_t h)
{
    for (uint64_t s = h & m->mask;; s = (s + 1) & m->mask) {
        uint32_t e = m->slots[s];
        if (!e) return s;
        e--;
        if (m->off[e + 1] - m->off[e] == n && !memcmp(m->pool + m->off[e], p, n)) return s;
    }
}

static void strmap_grow(StrMap *m)
{
    free(m->slots);
    m->mask = 2 * m->mask + 1;
    m->slots = xcalloc(m->mask + 1, sizeof *m->slots);
    for (size_t e = 0; e < m->n; e++) {
        const uint8_t *p = m->pool + m->off[e];
        size_t n = m->off[e + 1] - m->off[e];
        m->slots[strmap_find_slot(m, p, n, XXH3_64bits(p, n))] = (uint32_t)e + 1;
    }
}

/* The index of string p, added with value 0 when new. */
static size_t strmap_add(StrMap *m, const uint8_t *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n), s = strmap_find_slot(m, p, n, h);
    if (m->slots[s]) return m->slots[s] - 1;
    if (m->n == UINT32_MAX - 1) die("more than 4 billion distinct pieces");
    if (m->n + 1 >= m->cap) {
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->off = xrealloc(m->off, (m->cap + 1) * sizeof *m->off);
        m->value = xrealloc(m->value, m->cap * sizeof *m->value);
    }
    while (m->pool_len + n > m->pool_cap) {
        m->pool_cap = m->pool_cap ? 2 * m->pool_cap : 65536;
        m->pool = xrealloc(m->pool, m->pool_cap);
    }
    memcpy(m->pool + m->pool_len, p, n);
    m->pool_len += n;
    size_t e = m->n++;
    m->off[e + 1] = m->pool_len;
    m->value[e] = 0;
    m->slots[s] = (uint32_t)e + 1;
    if (2 * m->n > m->mask) strmap_grow(m);
    return e;
}

/* ---- piece counts ------------------------------------------------------- */

struct BpeCounts {
    int pattern;
    StrMap pieces;   /* value = count */
    uint64_t total;
};

BpeCounts *bpe_counts_new(int pattern)
{
    BpeCounts *c = xcalloc(1, sizeof *c);
    c->pattern = pattern;
    strmap_init(&c->pieces);
    return c;
}

static void count_piece(BpeCounts *c, const uint8_t *p, size_t n, uint64_t times)
{
    for (size_t at = 0; at < n; at += BPE_TRAIN_MAX_PIECE) {
        size_t k = n - at < BPE_TRAIN_MAX_PIECE ? n - at : BPE_TRAIN_MAX_PIECE;
        size_t i = strmap_add(&c->pieces, p + at, k);   /* may move value[] */
        c->pieces.value[i] += times;
        c->total += times;
    }
}

void bpe_counts_add(BpeCounts *c, const uint8_t *text, size_t len)
{
    for (size_t pos = 0; pos < len;) {
        size_t end = pretok_next(c->pattern, text, len, pos);
        count_piece(c, text + pos, end - pos, 1);
        pos = end;
    }
}

void bpe_counts_merge(BpeCounts *into, const BpeCounts *from)
{
    const StrMap *m = &from->pieces;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = strmap_add(&into->pieces, m->pool + m->off[e], m->off[e + 1] - m->off[e]);
        into->pieces.value[i] += m->value[e];
    }
    into->total += from->total;
}

size_t bpe_counts_distinct(const BpeCounts *c) { return c->pieces.n; }
uint64_t bpe_counts_total(const BpeCounts *c) { return c->total; }

void bpe_counts_free(BpeCounts *c)
{
    if (!c) return;
    strmap_free(&c->pieces);
    free(c);
}

/* ---- pairs: (a, b) -> count and the words that may contain them ---------- */

typedef struct {
    uint64_t *key;       /* [cap] a << 32 | b */
    int64_t *count;      /* [cap] weighted occurrences */
    uint32_t **where;    /* [cap] word ids (may repeat or be stale) */
    uint32_t *where_len, *where_cap;
    size_t n, cap;
    uint32_t *slots;     /* pair index + 1 */
    uint64_t mask;
} Pairs;

static uint64_t pair_hash(uint64_t key) { return XXH3_64bits(&key, sizeof key); }

static uint64_t pairs_slot(const Pairs *p, uint64_t key)
{
    for (uint64_t s = pair_hash(key) & p->mask;; s = (s + 1) & p->mask)
        if (!p->slots[s] || p->key[p->slots[s] - 1] == key) return s;
}

static size_t pairs_get(Pairs *p, uint32_t a, uint32_t b)
{
    uint64_t key = (uint64_t)a << 32 | b, s = pairs_slot(p, key);
    if (p->slots[s]) return p->slots[s] - 1;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 4096;
        p->key = xrealloc(p->key, p->cap * sizeof *p->key);
        p->count = xrealloc(p->count, p->cap * sizeof *p->count);
        p->where = xrealloc(p->where, p->cap * sizeof *p->where);
        p->where_len = xrealloc(p->where_len, p->cap * sizeof *p->where_len);
        p->where_cap = xrealloc(p->where_cap, p->cap * sizeof *p->where_cap);
    }
    size_t i = p->n++;
    p->key[i] = key;
    p->count[i] = 0;
    p->where[i] = NULL;
    p->where_len[i] = p->where_cap[i] = 0;
    p->slots[s] = (uint32_t)i + 1;
    if (2 * p->n > p->mask) {
        free(p->slots);
        p->mask = 2 * p->mask + 1;
        p->slots = xcalloc(p->mask + 1, sizeof *p->slots);
        for (size_t k = 0; k < p->n; k++) p->slots[pairs_slot(p, p->key[k])] = (uint32_t)k + 1;
    }
    return i;
}

static void pairs_note_word(Pairs *p, size_t i, uint32_t w)
{
    if (p->where_len[i] && p->where[i][p->where_len[i] - 1] == w) return;
    if (p->where_len[i] == p->where_cap[i]) {
        p->where_cap[i] = p->where_cap[i] ? 2 * p->where_cap[i] : 2;
        p->where[i] = xrealloc(p->where[i], p->where_cap[i] * sizeof **p->where);
    }
    p->where[i][p->where_len[i]++] = w;
}

/* ---- the max-heap of candidate merges: count, then smaller (a, b) -------- */

typedef struct { int64_t count; uint64_t key; } Cand;

static int cand_before(Cand x, Cand y) { return x.count > y.count || (x.count == y.count && x.key < y.key); }

typedef struct { Cand *h; size_t n, cap; } CandHeap;

static void cand_push(CandHeap *q, Cand x)
{
    if (q->n == q->cap) { q->cap = q->cap ? 2 * q->cap : 4096; q->h = xrealloc(q->h, q->cap * sizeof *q->h); }
    size_t i = q->n++;
    while (i > 0 && cand_before(x, q->h[(i - 1) / 2])) { q->h[i] = q->h[(i - 1) / 2]; i = (i - 1) / 2; }
    q->h[i] = x;
}

static Cand cand_pop(CandHeap *q)
{
    Cand top = q->h[0], x = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && cand_before(q->h[c + 1], q->h[c])) c++;
        if (!cand_before(q->h[c], x)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = x;
    return top;
}

/* ---- training ----------------------------------------------------------- */

typedef struct {
    uint32_t *syms;      /* all words' symbols; word w at start[w], len[w] */
    uint64_t *start;
    uint32_t *len;
    uint64_t *count;
    uint64_t *stamp;     /* the merge that last rewrote the word */
    size_t n;
} Words;

static void add_pairs(Pairs *pairs, const uint32_t *s, size_t n, int64_t times, uint32_t w, uint32_t z, size_t *touched,
                      size_t *n_touched)
{
    for (size_t i = 0; i + 1 < n; i++) {
        size_t pid = pairs_get(pairs, s[i], s[i + 1]);
        pairs->count[pid] += times;
        if (times > 0 && (s[i] == z || s[i + 1] == z)) {
            pairs_note_word(pairs, pid, w);
            touched[(*n_touched)++] = pid;
        }
    }
}

Tokenizer *bpe_train(const BpeCounts *c, uint32_t n_ranks, const char *const *special_names, size_t n_specials)
{
    if (n_ranks < 256) die("a vocabulary needs at least the 256 single bytes (asked for %u ordinary tokens)", n_ranks);
    /* the vocabulary: token bytes by id */
    StrMap vocab;
    strmap_init(&vocab);
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        strmap_add(&vocab, &byte, 1);
    }
    /* the words: each distinct piece as single-byte symbols */
    const StrMap *pm = &c->pieces;
    Words W = {0};
    W.n = pm->n;
    W.syms = xmalloc((pm->pool_len + 1) * sizeof *W.syms);
    W.start = xmalloc((W.n + 1) * sizeof *W.start);
    W.len = xmalloc((W.n + 1) * sizeof *W.len);
    W.count = xmalloc((W.n + 1) * sizeof *W.count);
    W.stamp = xcalloc(W.n + 1, sizeof *W.stamp);
    for (size_t w = 0; w < W.n; w++) {
        W.start[w] = pm->off[w];
        W.len[w] = (uint32_t)(pm->off[w + 1] - pm->off[w]);
        W.count[w] = pm->value[w];
        for (uint64_t i = pm->off[w]; i < pm->off[w + 1]; i++) W.syms[i] = pm->pool[i];
    }
    Pairs pairs = {0};
    pairs.mask = 4095;
    pairs.slots = xcalloc(pairs.mask + 1, sizeof *pairs.slots);
    for (size_t w = 0; w < W.n; w++) {
        const uint32_t *s = W.syms + W.start[w];
        for (size_t i = 0; i + 1 < W.len[w]; i++) {
            size_t pid = pairs_get(&pairs, s[i], s[i + 1]);
            pairs.count[pid] += (int64_t)W.count[w];
            pairs_note_word(&pairs, pid, (uint32_t)w);
        }
    }
    CandHeap heap = {0};
    for (size_t i = 0; i < pairs.n; i++)
        if (pairs.count[i] > 0) cand_push(&heap, (Cand){pairs.count[i], pairs.key[i]});

    uint32_t *old = xmalloc((BPE_TRAIN_MAX_PIECE + 1) * sizeof *old);
    size_t *touched = xmalloc(BPE_TRAIN_MAX_PIECE * sizeof *touched);
    size_t *all_touched = NULL, n_all = 0, cap_all = 0;
    uint8_t buf[2 * TOK_MAX_TOKEN_BYTES];
    Progress prog;
    progress_init(&prog, 10);
    uint64_t merge_no = 0;
    while (vocab.n < n_ranks && heap.n) {
        Cand top = cand_pop(&heap);
        uint32_t a = (uint32_t)(top.key >> 32), b = (uint32_t)top.key;
        size_t pid = pairs_get(&pairs, a, b);
        if (pairs.count[pid] != top.count) {
            if (pairs.count[pid] > 0) cand_push(&heap, (Cand){pairs.count[pid], top.key});
            continue;
        }
        size_t la = vocab.off[a + 1] - vocab.off[a], lb = vocab.off[b + 1] - vocab.off[b];
        if (la + lb > TOK_MAX_TOKEN_BYTES) { pairs.count[pid] = 0; continue; }
        memcpy(buf, vocab.pool + vocab.off[a], la);
        memcpy(buf + la, vocab.pool + vocab.off[b], lb);
        uint32_t z = (uint32_t)strmap_add(&vocab, buf, la + lb);
        merge_no++;
        n_all = 0;
        /* rewrite every word holding a b: take its pairs out, merge, put them back */
        uint32_t n_where = pairs.where_len[pid];
        uint32_t *where = pairs.where[pid];
        pairs.where[pid] = NULL;
        pairs.where_len[pid] = pairs.where_cap[pid] = 0;
        for (uint32_t k = 0; k < n_where; k++) {
            uint32_t w = where[k];
            if (W.stamp[w] == merge_no) continue;
            uint32_t *s = W.syms + W.start[w];
            size_t n = W.len[w], found = 0;
            for (size_t i = 0; i + 1 < n && !found; i++) found = s[i] == a && s[i + 1] == b;
            if (!found) continue;
            W.stamp[w] = merge_no;
            memcpy(old, s, n * sizeof *s);
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                if (i + 1 < n && old[i] == a && old[i + 1] == b) { s[m++] = z; i++; }
                else s[m++] = old[i];
            }
            W.len[w] = (uint32_t)m;
            size_t nt = 0;
            add_pairs(&pairs, old, n, -(int64_t)W.count[w], w, z, touched, &nt);
            add_pairs(&pairs, s, m, (int64_t)W.count[w], w, z, touched, &nt);
            if (n_all + nt > cap_all) { cap_all = 2 * (n_all + nt); all_touched = xrealloc(all_touched, cap_all * sizeof *all_touched); }
            memcpy(all_touched + n_all, touched, nt * sizeof *touched);
            n_all += nt;
        }
        free(where);
        for (size_t k = 0; k < n_all; k++) {
            size_t t = all_touched[k];
            if (pairs.count[t] > 0) cand_push(&heap, (Cand){pairs.count[t], pairs.key[t]});
        }
        progress_update(&prog, "merges: %zu of %u tokens, last count %" PRId64, vocab.n, n_ranks, top.count);
    }
    progress_done(&prog, "trained %zu tokens from %zu distinct pieces", vocab.n, W.n);
    if (vocab.n < n_ranks)
        warn("the text ran out of pairs to merge: %zu ordinary tokens instead of %u", vocab.n, n_ranks);
    uint32_t *ids = xmalloc((n_specials + 1) * sizeof *ids);
    for (size_t i = 0; i < n_specials; i++) ids[i] = (uint32_t)(vocab.n + i);
    Tokenizer *t = tokenizer_build("training", c->pattern, vocab.pool, vocab.off, vocab.n, special_names, ids, n_specials);
    free(ids);
    free(old);
    free(touched);
    free(all_touched);
    free(heap.h);
    for (size_t i = 0; i < pairs.n; i++) free(pairs.where[i]);
    free(pairs.key); free(pairs.count); free(pairs.where); free(pairs.where_len); free(pairs.where_cap); free(pairs.slots);
    free(W.syms); free(W.start); free(W.len); free(W.count); free(W.stamp);
    strmap_free(&vocab);
    return t;
}
