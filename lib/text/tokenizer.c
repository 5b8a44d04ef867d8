/* Byte-level BPE, tiktoken's algorithm: see tokenizer.h. */
#include "text/tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
/* inlined: a call per piece through the shared library costs more than the hash */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/base.h"
#include "text/pretok.h"

struct Tokenizer {
    int pattern;
    uint32_t n_ranks, n_vocab;
    uint8_t *bytes;          /* [off[n_ranks]] token bytes, rank order */
    uint64_t *off;           /* [n_ranks + 1] */
    uint64_t *slots;         /* [n_slots] hash tag << 32 | rank + 1; 0 = empty */
    uint64_t slot_mask;
    size_t n_specials;
    char **special_names;    /* [n_specials], sorted by id */
    uint32_t *special_ids;   /* [n_specials] */
    uint32_t max_token_len;
    uint64_t serial;         /* tells cache entries of different tokenizers apart */
    uint8_t fingerprint[16];
};

/* ---- growable outputs -------------------------------------------------- */

static void ids_push(TokIds *v, uint32_t id)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->ids = xrealloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->len++] = id;
}

static void bytes_append(TokBytes *v, const void *p, size_t n)
{
    if (v->len + n > v->cap) {
        while (v->len + n > v->cap) v->cap = v->cap ? v->cap * 2 : 4096;
        v->bytes = xrealloc(v->bytes, v->cap);
    }
    memcpy(v->bytes + v->len, p, n);
    v->len += n;
}

void tokids_free(TokIds *v) { free(v->ids); *v = (TokIds){0}; }
void tokbytes_free(TokBytes *v) { free(v->bytes); *v = (TokBytes){0}; }

/* ---- base64 ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(char *out, const uint8_t *in, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long base64_decode(uint8_t *out, const char *s, size_t len)
{
    if (len == 0 || len % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
        if (pad && i + 4 != len) return -1;
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int d = b64_value(s[i + k]);
            if (d < 0) return -1;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        /* canonical: the bits below the last byte must be zero */
        if ((pad == 1 && (v & 0xFF)) || (pad == 2 && (v & 0xFFFF))) return -1;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) out[o++] = (uint8_t)(v >> 8);
        if (pad < 1) out[o++] = (uint8_t)v;
    }
    return (long)o;
}

/* ---- the rank table: open addressing over the token bytes -------------- */

/* The slot holds the upper half of the hash as a tag, so that a probe
 * rarely has to fetch a token's bytes only to find they differ. */
static inline int same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n > 8) return !memcmp(a, b, n);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int64_t rank_hashed(const Tokenizer *t, const uint8_t *p, size_t n, uint64_t h)
{
    uint64_t tag = h >> 32;
    for (uint64_t s = h & t->slot_mask;; s = (s + 1) & t->slot_mask) {
        uint64_t v = t->slots[s];
        if (!v) return -1;
        if (v >> 32 != tag) continue;
        uint32_t r = (uint32_t)v - 1;
        if (t->off[r + 1] - t->off[r] == n && same_bytes(t->bytes + t->off[r], p, n)) return r;
    }
}

int64_t tokenizer_rank(const Tokenizer *t, const uint8_t *p, size_t n)
{
    if (n > t->max_token_len) return -1;
    return rank_hashed(t, p, n, XXH3_64bits(p, n));
}

/* Fills the table; returns the rank that duplicates an earlier one, or -1. */
static int64_t build_table(Tokenizer *t)
{
    uint64_t n_slots = 1;
    while (n_slots < 2ull * t->n_ranks + 16) n_slots <<= 1;
    t->slots = xcalloc(n_slots, sizeof *t->slots);
    t->slot_mask = n_slots - 1;
    for (uint32_t r = 0; r < t->n_ranks; r++) {
        const uint8_t *p = t->bytes + t->off[r];
        size_t n = t->off[r + 1] - t->off[r];
        if (n > t->max_token_len) t->max_token_len = (uint32_t)n;
        if (tokenizer_rank(t, p, n) >= 0) return r;
        uint64_t h = XXH3_64bits(p, n), s = h & t->slot_mask;
        while (t->slots[s]) s = (s + 1) & t->slot_mask;
        t->slots[s] = (h >> 32) << 32 | (r + 1);
    }
    return -1;
}

/* ---- BPE of one piece --------------------------------------------------- */

#define NO_RANK UINT32_MAX

static uint32_t pair_rank(const Tokenizer *t, const uint8_t *p, size_t a, size_t b)
{
    int64_t r = tokenizer_rank(t, p + a, b - a);
    return r < 0 ? NO_RANK : (uint32_t)r;
}

static uint32_t byte_rank(const Tokenizer *t, uint8_t b)
{
    return (uint32_t)tokenizer_rank(t, &b, 1);   /* every byte has one: checked at build */
}

/* Short pieces: tiktoken's own scheme, a scan for the lowest-ranked pair
 * after each merge. start[i] is where part i begins; rank[i] the rank of
 * parts i and i+1 together. Quadratic, so only for short pieces. */
#define SHORT_PIECE 64
static void merge_short(const Tokenizer *t, TokIds *out, const uint8_t *p, size_t n)
{
    size_t start[SHORT_PIECE + 1];
    uint32_t rank[SHORT_PIECE + 1];
    size_t m = n;   /* parts */
    for (size_t i = 0; i <= n; i++) start[i] = i;
    for (size_t i = 0; i + 1 < m; i++) rank[i] = pair_rank(t, p, start[i], start[i + 2]);
    rank[m - 1] = NO_RANK;
    while (m > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == NO_RANK) break;
        memmove(start + best + 1, start + best + 2, (m - best - 1) * sizeof *start);
        memmove(rank + best + 1, rank + best + 2, (m - best - 2) * sizeof *rank);
        m--;
        rank[best] = best + 1 < m ? pair_rank(t, p, start[best], start[best + 2]) : NO_RANK;
        if (best > 0) rank[best - 1] = pair_rank(t, p, start[best - 1], start[best + 1]);
    }
    for (size_t i = 0; i < m; i++) ids_push(out, (uint32_t)tokenizer_rank(t, p + start[i], start[i + 1] - start[i]));
}

/* Long pieces: the same merges in the same order (lowest rank, then
 * leftmost), with a heap of candidate pairs and a linked list of parts,
 * so that a 10 MB piece costs n log n, not n^2. Heap entries go stale
 * when a neighbour merges; a popped entry is used only if its part is
 * alive and its pair still has that rank (a rank names a byte string, so
 * same rank = same pair). */
typedef struct { uint32_t rank; uint32_t pos; } HeapItem;

static int item_less(HeapItem a, HeapItem b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(HeapItem *h, size_t *n, HeapItem x)
{
    size_t i = (*n)++;
    while (i > 0 && item_less(x, h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = x;
}

static HeapItem heap_pop(HeapItem *h, size_t *n)
{
    HeapItem top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && item_less(h[c + 1], h[c])) c++;
        if (!item_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

static void merge_long(const Tokenizer *t, TokIds *out, const uint8_t *p, size_t n)
{
    /* part i begins at byte i; next[i] / prev[i] link live parts; n = end */
    uint32_t *next = xmalloc((n + 1) * sizeof *next), *prev = xmalloc((n + 1) * sizeof *prev);
    uint32_t *cur = xmalloc(n * sizeof *cur);   /* current pair rank of live part i */
    HeapItem *heap = xmalloc(2 * n * sizeof *heap);
    size_t hn = 0;
    for (size_t i = 0; i <= n; i++) { next[i] = (uint32_t)i + 1; prev[i] = (uint32_t)i - 1; }
    for (size_t i = 0; i < n; i++) {
        cur[i] = i + 2 <= n ? pair_rank(t, p, i, i + 2) : NO_RANK;
        if (cur[i] != NO_RANK) heap_push(heap, &hn, (HeapItem){cur[i], (uint32_t)i});
    }
    while (hn) {
        HeapItem it = heap_pop(heap, &hn);
        uint32_t i = it.pos;
        if (cur[i] != it.rank) continue;   /* stale (dead parts get NO_RANK) */
        uint32_t j = next[i];              /* absorbed into i */
        next[i] = next[j];
        prev[next[j]] = i;
        cur[j] = NO_RANK;
        uint32_t after = next[i];
        cur[i] = after < n ? pair_rank(t, p, i, next[after]) : NO_RANK;
        if (cur[i] != NO_RANK) heap_push(heap, &hn, (HeapItem){cur[i], i});
        if (i > 0) {
            uint32_t h = prev[i];
            cur[h] = pair_rank(t, p, h, next[i]);
            if (cur[h] != NO_RANK) heap_push(heap, &hn, (HeapItem){cur[h], h});
        }
        if (hn + 2 > 2 * n) {   /* compact: drop stale entries */
            size_t k = 0;
            for (size_t e = 0; e < hn; e++)
                if (cur[heap[e].pos] == heap[e].rank) heap[k++] = heap[e];
            hn = 0;
            for (size_t e = 0; e < k; e++) heap_push(heap, &hn, heap[e]);
        }
    }
    for (uint32_t i = 0; i < n; i = next[i]) ids_push(out, (uint32_t)tokenizer_rank(t, p + i, next[i] - i));
    free(next);
    free(prev);
    free(cur);
    free(heap);
}

/* A per-thread cache of short pieces that are not one token, keyed by the
 * hash already computed for the whole-piece lookup: text repeats its
 * words, and merging is most of the cost of a piece. Direct-mapped, in
 * thread-local storage so that threads share nothing. */
#define CACHE_SLOTS 4096
#define CACHE_PIECE 24
#define CACHE_IDS 8
typedef struct {
    uint64_t serial;   /* of the tokenizer; 0 = empty */
    uint64_t h;
    uint8_t len, n;
    uint8_t bytes[CACHE_PIECE];
    uint32_t ids[CACHE_IDS];
} CacheEntry;
static _Thread_local CacheEntry piece_cache[CACHE_SLOTS];
static atomic_uint_fast64_t next_serial = 1;

void tokenizer_encode_piece(const Tokenizer *t, TokIds *out, const uint8_t *p, size_t n)
{
    /* merging holds about 28 bytes per byte of the piece: a longer piece
     * (a million letters without a space) is merged TOK_MAX_PIECE bytes at
     * a time, the one place where the tokens may differ from tiktoken's */
    for (; n > TOK_MAX_PIECE; p += TOK_MAX_PIECE, n -= TOK_MAX_PIECE) tokenizer_encode_piece(t, out, p, TOK_MAX_PIECE);
    if (n == 0) return;
    if (n == 1) { ids_push(out, byte_rank(t, p[0])); return; }
    uint64_t h = XXH3_64bits(p, n);
    if (n <= t->max_token_len) {
        int64_t r = rank_hashed(t, p, n, h);
        if (r >= 0) { ids_push(out, (uint32_t)r); return; }
    }
    if (n > SHORT_PIECE) { merge_long(t, out, p, n); return; }
    CacheEntry *e = n <= CACHE_PIECE ? &piece_cache[h & (CACHE_SLOTS - 1)] : NULL;
    if (e && e->serial == t->serial && e->h == h && e->len == n && same_bytes(e->bytes, p, n)) {
        for (int i = 0; i < e->n; i++) ids_push(out, e->ids[i]);
        return;
    }
    size_t before = out->len;
    merge_short(t, out, p, n);
    size_t k = out->len - before;
    if (e && k <= CACHE_IDS) {
        *e = (CacheEntry){.serial = t->serial, .h = h, .len = (uint8_t)n, .n = (uint8_t)k};
        memcpy(e->bytes, p, n);
        memcpy(e->ids, out->ids + before, k * sizeof *e->ids);
    }
}

static void encode_ordinary(const Tokenizer *t, TokIds *out, const uint8_t *s, size_t len)
{
    for (size_t pos = 0; pos < len;) {
        size_t end = pretok_next(t->pattern, s, len, pos);
        tokenizer_encode_piece(t, out, s + pos, end - pos);
        pos = end;
    }
}

static int ascii_letter(uint8_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }

size_t tokenizer_cut_point(const uint8_t *s, size_t len, size_t from)
{
    if (from < 2) from = 2;
    for (size_t p = from; p < len; p++) {
        const uint8_t *nl = memchr(s + p - 1, '\n', len - (p - 1));
        if (!nl) return len;
        p = (size_t)(nl - s) + 1;   /* just after the newline */
        if (p < len && ascii_letter(s[p]) && s[p - 2] > ' ' && s[p - 2] < 0x7F) return p;
    }
    return len;
}

/* The first special name in s[from..len): leftmost, then longest. */
static size_t find_special(const Tokenizer *t, const uint8_t *s, size_t len, size_t from, size_t *which)
{
    size_t best = len, best_len = 0;
    for (size_t i = 0; i < t->n_specials; i++) {
        size_t nl = strlen(t->special_names[i]);
        const uint8_t *m = memmem(s + from, len - from, t->special_names[i], nl);
        if (!m) continue;
        size_t at = (size_t)(m - s);
        if (at < best || (at == best && nl > best_len)) { best = at; best_len = nl; *which = i; }
    }
    return best;
}

void tokenizer_encode(const Tokenizer *t, TokIds *out, const uint8_t *text, size_t len, int flags)
{
    if (!(flags & TOK_ALLOW_SPECIAL) || t->n_specials == 0) { encode_ordinary(t, out, text, len); return; }
    size_t pos = 0;
    while (pos < len) {
        size_t which = 0, at = find_special(t, text, len, pos, &which);
        encode_ordinary(t, out, text + pos, at - pos);
        if (at == len) break;
        ids_push(out, t->special_ids[which]);
        pos = at + strlen(t->special_names[which]);
    }
}

const uint8_t *tokenizer_token(const Tokenizer *t, uint32_t id, size_t *len)
{
    if (id < t->n_ranks) {
        *len = t->off[id + 1] - t->off[id];
        return t->bytes + t->off[id];
    }
    for (size_t i = 0; i < t->n_specials; i++)
        if (t->special_ids[i] == id) {
            *len = strlen(t->special_names[i]);
            return (const uint8_t *)t->special_names[i];
        }
    return NULL;
}

void tokenizer_decode(const Tokenizer *t, TokBytes *out, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *p = tokenizer_token(t, ids[i], &len);
        if (!p) die("token id %u is not in the vocabulary (size %u)", ids[i], t->n_vocab);
        bytes_append(out, p, len);
    }
}

/* ---- accessors ---------------------------------------------------------- */

uint32_t tokenizer_n_vocab(const Tokenizer *t) { return t->n_vocab; }
uint32_t tokenizer_n_ranks(const Tokenizer *t) { return t->n_ranks; }
int tokenizer_pattern(const Tokenizer *t) { return t->pattern; }
const uint8_t *tokenizer_fingerprint(const Tokenizer *t) { return t->fingerprint; }
size_t tokenizer_n_specials(const Tokenizer *t) { return t->n_specials; }
const char *tokenizer_special_name(const Tokenizer *t, size_t i) { return t->special_names[i]; }
uint32_t tokenizer_special_id(const Tokenizer *t, size_t i) { return t->special_ids[i]; }

int64_t tokenizer_special(const Tokenizer *t, const char *name)
{
    for (size_t i = 0; i < t->n_specials; i++)
        if (!strcmp(t->special_names[i], name)) return t->special_ids[i];
    return -1;
}

/* ---- the canonical file text (what save writes, what the fingerprint hashes) */

static void text_append(TokBytes *b, const char *s) { bytes_append(b, s, strlen(s)); }

static void canonical_text(const Tokenizer *t, TokBytes *b)
{
    char line[64 + 2 * TOK_MAX_TOKEN_BYTES];
    text_append(b, "#sigma-tokenizer 1\n");
    snprintf(line, sizeof line, "#pattern %s\n", pretok_name(t->pattern));
    text_append(b, line);
    for (size_t i = 0; i < t->n_specials; i++) {
        snprintf(line, sizeof line, "#special %u %s\n", t->special_ids[i], t->special_names[i]);
        text_append(b, line);
    }
    for (uint32_t r = 0; r < t->n_ranks; r++) {
        size_t k = base64_encode(line, t->bytes + t->off[r], t->off[r + 1] - t->off[r]);
        k += (size_t)snprintf(line + k, sizeof line - k, " %u\n", r);
        bytes_append(b, line, k);
    }
}

void tokenizer_save(const Tokenizer *t, const char *path)
{
    TokBytes b = {0};
    canonical_text(t, &b);
    write_file_atomic(path, b.bytes, b.len);
    tokbytes_free(&b);
}

/* ---- building ----------------------------------------------------------- */

static int valid_special_name(const char *s)
{
    if (!*s || strlen(s) > 255) return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ') return 0;
    return 1;
}

Tokenizer *tokenizer_build(const char *what, int pattern, const uint8_t *bytes, const uint64_t *off, size_t n,
                           const char *const *special_names, const uint32_t *special_ids, size_t n_specials)
{
    if (pattern < 0 || pattern >= PRETOK_COUNT) die("%s: unknown pattern", what);
    if (n < 256) die("%s: %zu ordinary tokens; at least the 256 single bytes are needed", what, n);
    if (n >= UINT32_MAX / 2) die("%s: too many tokens (%zu)", what, n);
    if (n_specials > TOK_MAX_SPECIALS) die("%s: too many special tokens (%zu)", what, n_specials);
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->serial = atomic_fetch_add(&next_serial, 1);
    t->pattern = pattern;
    t->n_ranks = (uint32_t)n;
    t->off = xmalloc((n + 1) * sizeof *t->off);
    memcpy(t->off, off, (n + 1) * sizeof *t->off);
    t->bytes = xmalloc(off[n] ? off[n] : 1);
    memcpy(t->bytes, bytes, off[n]);
    for (size_t r = 0; r < n; r++) {
        size_t len = off[r + 1] - off[r];
        if (len == 0 || len > TOK_MAX_TOKEN_BYTES) die("%s: token %zu has %zu bytes (1 to %d allowed)", what, r, len, TOK_MAX_TOKEN_BYTES);
    }
    int64_t dup = build_table(t);
    if (dup >= 0) die("%s: token %" PRId64 " repeats the bytes of token %" PRId64, what, dup,
                      tokenizer_rank(t, t->bytes + t->off[dup], t->off[dup + 1] - t->off[dup]));
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (tokenizer_rank(t, &c, 1) < 0) die("%s: no token for the single byte 0x%02x", what, b);
    }
    /* specials, sorted by id */
    t->n_specials = n_specials;
    t->special_names = xcalloc(n_specials + 1, sizeof *t->special_names);
    t->special_ids = xcalloc(n_specials + 1, sizeof *t->special_ids);
    t->n_vocab = t->n_ranks;
    for (size_t i = 0; i < n_specials; i++) {
        size_t k = i;
        while (k > 0 && t->special_ids[k - 1] > special_ids[i]) {
            t->special_ids[k] = t->special_ids[k - 1];
            t->special_names[k] = t->special_names[k - 1];
            k--;
        }
        t->special_ids[k] = special_ids[i];
        t->special_names[k] = xstrdup(special_names[i]);
        if (!valid_special_name(special_names[i])) die("%s: special token name '%s' is empty, too long or has a space or control byte", what, special_names[i]);
        if (special_ids[i] < t->n_ranks) die("%s: special token %s has id %u, which an ordinary token has", what, special_names[i], special_ids[i]);
        if (special_ids[i] >= UINT32_MAX / 2) die("%s: special token %s: id %u too large", what, special_names[i], special_ids[i]);
        if (special_ids[i] + 1 > t->n_vocab) t->n_vocab = special_ids[i] + 1;
    }
    for (size_t i = 1; i < n_specials; i++) {
        if (t->special_ids[i] == t->special_ids[i - 1]) die("%s: two special tokens have id %u", what, t->special_ids[i]);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(t->special_names[i], t->special_names[k])) die("%s: special token %s given twice", what, t->special_names[i]);
    }
    TokBytes b = {0};
    canonical_text(t, &b);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(b.bytes, b.len));
    memcpy(t->fingerprint, c.digest, 16);
    tokbytes_free(&b);
    return t;
}

void tokenizer_free(Tokenizer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_specials; i++) free(t->special_names[i]);
    free(t->special_names);
    free(t->special_ids);
    free(t->bytes);
    free(t->off);
    free(t->slots);
    free(t);
}

/* ---- loading ------------------------------------------------------------ */

/* tiktoken's published special tokens, given to a plain rank file of the
 * published size (tiktoken_ext/openai_public.py). */
typedef struct { int pattern; uint32_t n_ranks; const char *names[6]; uint32_t ids[6]; } Published;
static const Published published[] = {
    {PRETOK_GPT2, 50256, {TOK_ENDOFTEXT}, {50256}},
    {PRETOK_CL100K, 100256,
     {TOK_ENDOFTEXT, "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"},
     {100257, 100258, 100259, 100260, 100276}},
    {PRETOK_O200K, 199998, {TOK_ENDOFTEXT, "<|endofprompt|>"}, {199999, 200018}},
};

/* "ID NAME" of a #special line: the offset of NAME, 0 when the line is not
 * that, -1 for an id beyond 32 bits (refused, never wrapped). */
static int special_line(const char *s, uint32_t *id)
{
    uint64_t v = 0;
    int i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX) return -1;
    }
    if (i == 0 || s[i] != ' ' || !s[i + 1]) return 0;
    *id = (uint32_t)v;
    return i + 1;
}

Tokenizer *tokenizer_load(const char *path, const char *pattern_name)
{
    size_t len;
    char *text = read_file(path, TOK_MAX_FILE_BYTES, &len);
    int pattern = -1;
    if (pattern_name) {
        pattern = pretok_by_name(pattern_name);
        if (pattern < 0) die("unknown pattern '%s' (gpt2, r50k, cl100k or o200k)", pattern_name);
    }
    int sigma = len >= 18 && !memcmp(text, "#sigma-tokenizer ", 17);
    int file_pattern = -1;
    const char *names[TOK_MAX_SPECIALS];
    uint32_t sids[TOK_MAX_SPECIALS];
    size_t n_specials = 0;
    uint8_t *bytes = xmalloc(len + 1);
    size_t cap = 1024, n = 0, nb = 0;
    uint64_t *off = xmalloc(cap * sizeof *off);
    off[0] = 0;
    size_t line_no = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        line_no++;
        *e = 0;
        if (e > p && e[-1] == '\r') e[-1] = 0;
        if (*p == '#') {
            char word[32];
            uint32_t id;
            int used = 0;
            if (!sigma) die("%s, line %zu: a '#' line in a plain rank file", path, line_no);
            if (line_no == 1) {
                if (strcmp(p, "#sigma-tokenizer 1")) die("%s, line 1: unsupported version '%s'", path, p);
            } else if (sscanf(p, "#pattern %31s%n", word, &used) == 1 && !p[used]) {
                file_pattern = pretok_by_name(word);
                if (file_pattern < 0) die("%s, line %zu: unknown pattern '%s'", path, line_no, word);
            } else if (!strncmp(p, "#special ", 9)) {
                used = special_line(p + 9, &id);
                if (used < 0)
                    die("%s, line %zu: special token id %.*s is out of range", path, line_no, (int)strspn(p + 9, "0123456789"), p + 9);
                if (used == 0) die("%s, line %zu: expected '#special ID NAME', got '%.40s'", path, line_no, p);
                if (n_specials == TOK_MAX_SPECIALS) die("%s, line %zu: too many special tokens", path, line_no);
                used += 9;
                names[n_specials] = p + used;
                sids[n_specials++] = id;
            } else die("%s, line %zu: unknown header line '%.40s'", path, line_no, p);
        } else if (*p) {
            char *sp = strchr(p, ' ');
            if (!sp) die("%s, line %zu: expected 'base64 rank'", path, line_no);
            *sp = 0;
            long k = base64_decode(bytes + nb, p, (size_t)(sp - p));
            if (k <= 0) die("%s, line %zu: invalid base64 '%.40s'", path, line_no, p);
            char *q;
            errno = 0;
            unsigned long rank = strtoul(sp + 1, &q, 10);
            if (*q || q == sp + 1 || errno || !(sp[1] >= '0' && sp[1] <= '9'))
                die("%s, line %zu: invalid rank '%.20s'", path, line_no, sp + 1);
            if (rank != n) die("%s, line %zu: rank %lu where %zu was expected (ranks must be 0, 1, 2, ... in order)", path, line_no, rank, n);
            nb += (size_t)k;
            if (n + 2 > cap) { cap *= 2; off = xrealloc(off, cap * sizeof *off); }
            off[++n] = nb;
        }
        p = e + 1;
    }
    if (n == 0) die("%s: no tokens", path);
    if (sigma) {
        if (file_pattern < 0) die("%s: no #pattern line", path);
        if (pattern >= 0 && pattern != file_pattern)
            die("%s: the file's pattern is %s, not %s", path, pretok_name(file_pattern), pretok_name(pattern));
        pattern = file_pattern;
    } else {
        if (pattern < 0) die("%s is a plain tiktoken rank file: give its pattern (--pattern gpt2, cl100k or o200k)", path);
        const Published *pub = NULL;
        for (size_t i = 0; i < sizeof published / sizeof *published; i++)
            if (published[i].pattern == pattern && published[i].n_ranks == n) pub = &published[i];
        if (pub) {
            for (; n_specials < 6 && pub->names[n_specials]; n_specials++) {
                names[n_specials] = pub->names[n_specials];
                sids[n_specials] = pub->ids[n_specials];
            }
        } else {
            names[0] = TOK_ENDOFTEXT;
            sids[0] = (uint32_t)n;
            n_specials = 1;
        }
    }
    Tokenizer *t = tokenizer_build(path, pattern, bytes, off, n, names, sids, n_specials);
    free(bytes);
    free(off);
    free(text);
    return t;
}

TokHeader tokenizer_header(const Tokenizer *t)
{
    TokHeader h = {.vocab_size = tokenizer_n_vocab(t)};
    memcpy(h.fingerprint, tokenizer_fingerprint(t), 16);
    return h;
}
