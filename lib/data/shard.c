/* Shard sets: writing, manifest, loading and checking shards, reading
 * documents back in input order. The format is described in shard.h and
 * sigma-formats(5). */
#include "data/shard.h"
#include "base/base.h"
#include "base/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

const char *const split_names[N_SPLITS] = {"train", "val"};

/* Header field offsets. */
enum {
    H_MAGIC = 0,              /* 8 bytes "SIGSHARD" */
    H_VERSION = 8,            /* u32 */
    H_WIDTH = 12,             /* u32: 2 or 4 */
    H_VOCAB = 16,             /* u32 */
    H_COMPRESSION = 20,       /* u32: 0 raw, 1 zstd */
    H_TOKENS = 24,            /* u64 */
    H_DOCS = 32,              /* u64: index entries */
    H_PAYLOAD_BYTES = 40,     /* u64: stored payload size */
    H_TOKENS_HASH = 48,       /* u64: XXH3-64 of the raw tokens at their width */
    H_INDEX_HASH = 56,        /* u64: XXH3-64 of the index */
    H_PAYLOAD_HASH = 64,      /* u64: XXH3-64 of the stored payload */
    H_FIRST_CONTINUES = 72,   /* u32: 0 or 1 */
    H_RESERVED = 76,          /* u32: 0 */
    H_TAIL_ORDINAL = 80,      /* u64 */
    H_FINGERPRINT = 88,       /* 16 bytes */
    H_HEADER_HASH = 104,      /* u64: XXH3-64 of bytes [0, 104) */
    H_END = 112               /* bytes [112, 128) are zero */
};
enum { COMPRESS_RAW = 0, COMPRESS_ZSTD = 1 };

static void put32(uint8_t *h, int off, uint32_t v) { memcpy(h + off, &v, 4); }
static void put64(uint8_t *h, int off, uint64_t v) { memcpy(h + off, &v, 8); }
static uint32_t get32(const uint8_t *h, int off) { uint32_t v; memcpy(&v, h + off, 4); return v; }
static uint64_t get64(const uint8_t *h, int off) { uint64_t v; memcpy(&v, h + off, 8); return v; }

int split_from_name(const char *name)
{
    for (int s = 0; s < N_SPLITS; s++)
        if (!strcmp(name, split_names[s])) return s;
    return -1;
}

uint32_t token_width_for(uint32_t vocab_size)
{
    return vocab_size <= 65536 ? 2 : 4;
}

int split_draw_val(uint64_t seed, double val_fraction, uint64_t ordinal)
{
    if (val_fraction <= 0) return 0;
    /* 53 random bits as a uniform number in [0, 1) */
    double u = (double)(XXH3_64bits_withSeed(&ordinal, sizeof ordinal, seed) >> 11) * 0x1.0p-53;
    return u < val_fraction;
}

char *shardset_path(const ShardSet *set, int split, size_t i)
{
    return xasprintf("%s/%s", set->dir, set->split[split].shards[i].file);
}

/* ==== writing ================================================================ */

typedef struct {
    /* the shard being filled; the buffers grow as it fills, so that a large
     * --shard-tokens costs memory only for the tokens that come */
    uint8_t *tokens;           /* [cap_tokens * width] */
    uint64_t n_tokens, cap_tokens;
    uint64_t *index;           /* [2 * cap_docs]: end, ordinal */
    uint64_t n_docs, cap_docs;
    int first_continues;
    /* the shards already written */
    ShardEntry *shards;
    size_t n_shards, cap_shards;
    uint64_t total_tokens, total_docs;
} SplitWriter;

struct ShardWriter {
    AtomicDir dir;
    TokHeader tok;
    ShardOptions opt;
    uint32_t width;
    uint64_t max_docs;         /* index entries per shard: bounds memory for empty documents */
    SplitWriter split[N_SPLITS];
    uint64_t ordinal;          /* of the current document */
    int cur;                   /* its split, or -1 before its first token */
    int doc_open;              /* the current document has tokens in some shard */
    uint64_t val_taken;
    uint8_t *zbuf;
    size_t zcap;
    ZSTD_CCtx *zctx;
};

ShardWriter *shardwriter_open(const char *dir, int force, const TokHeader *tok, const ShardOptions *opt)
{
    ShardWriter *w = xcalloc(1, sizeof *w);
    w->tok = *tok;
    w->opt = *opt;
    w->width = token_width_for(tok->vocab_size);
    w->max_docs = opt->shard_tokens;
    w->cur = -1;
    for (int s = 0; s < N_SPLITS; s++) {
        /* allocated on first use: a set with no validation split costs nothing */
        w->split[s].tokens = NULL;
        w->split[s].index = NULL;
    }
    if (opt->level > 0) {
        w->zctx = ZSTD_createCCtx();
        if (!w->zctx) BUG("out of memory");
        ZSTD_CCtx_setParameter(w->zctx, ZSTD_c_compressionLevel, opt->level);
        ZSTD_CCtx_setParameter(w->zctx, ZSTD_c_checksumFlag, 0);   /* our own XXH3 covers it */
    }
    atomic_dir_begin(&w->dir, dir, force);
    return w;
}

static void flush_shard(ShardWriter *w, int s, uint64_t tail_ordinal)
{
    SplitWriter *sw = &w->split[s];
    if (sw->n_tokens == 0 && sw->n_docs == 0) return;
    size_t raw_bytes = sw->n_tokens * w->width;
    const uint8_t *payload = sw->tokens;
    size_t payload_bytes = raw_bytes;
    if (w->opt.level > 0) {
        if (ZSTD_compressBound(raw_bytes) > w->zcap) {
            w->zcap = ZSTD_compressBound(raw_bytes);
            free(w->zbuf);
            w->zbuf = xmalloc(w->zcap);
        }
        payload_bytes = ZSTD_compress2(w->zctx, w->zbuf, w->zcap, sw->tokens, raw_bytes);
        if (ZSTD_isError(payload_bytes)) die("zstd compression failed: %s", ZSTD_getErrorName(payload_bytes));
        payload = w->zbuf;
    }
    size_t index_bytes = sw->n_docs * 16;

    uint8_t h[SHARD_HEADER_BYTES] = {0};
    memcpy(h + H_MAGIC, SHARD_MAGIC, 8);
    put32(h, H_VERSION, SHARD_VERSION);
    put32(h, H_WIDTH, w->width);
    put32(h, H_VOCAB, w->tok.vocab_size);
    put32(h, H_COMPRESSION, w->opt.level > 0 ? COMPRESS_ZSTD : COMPRESS_RAW);
    put64(h, H_TOKENS, sw->n_tokens);
    put64(h, H_DOCS, sw->n_docs);
    put64(h, H_PAYLOAD_BYTES, payload_bytes);
    uint64_t tokens_hash = XXH3_64bits(sw->tokens, raw_bytes);
    put64(h, H_TOKENS_HASH, tokens_hash);
    put64(h, H_INDEX_HASH, XXH3_64bits(sw->index, index_bytes));
    put64(h, H_PAYLOAD_HASH, payload == sw->tokens ? tokens_hash : XXH3_64bits(payload, payload_bytes));
    put32(h, H_FIRST_CONTINUES, (uint32_t)sw->first_continues);
    put64(h, H_TAIL_ORDINAL, tail_ordinal);
    memcpy(h + H_FINGERPRINT, w->tok.fingerprint, 16);
    put64(h, H_HEADER_HASH, XXH3_64bits(h, H_HEADER_HASH));

    if (sw->n_shards == sw->cap_shards) {
        sw->cap_shards = sw->cap_shards ? 2 * sw->cap_shards : 16;
        sw->shards = xrealloc(sw->shards, sw->cap_shards * sizeof *sw->shards);
    }
    ShardEntry *e = &sw->shards[sw->n_shards];
    e->file = xasprintf("%s-%06zu.shard", split_names[s], sw->n_shards);
    e->tokens = sw->n_tokens;
    e->docs = sw->n_docs;
    e->bytes = SHARD_HEADER_BYTES + index_bytes + payload_bytes;

    char *path = atomic_dir_file(&w->dir, e->file);
    XXH3_state_t *fh = XXH3_createState();
    if (!fh) BUG("out of memory");
    XXH3_64bits_reset(fh);
    XXH3_64bits_update(fh, h, sizeof h);
    XXH3_64bits_update(fh, sw->index, index_bytes);
    XXH3_64bits_update(fh, payload, payload_bytes);
    e->xxh3 = XXH3_64bits_digest(fh);
    XXH3_freeState(fh);

    FILE *f = xfopen(path, "wb");
    xfwrite(h, sizeof h, f, path);
    xfwrite(sw->index, index_bytes, f, path);
    xfwrite(payload, payload_bytes, f, path);
    xfclose(f, path);
    free(path);

    sw->n_shards++;
    sw->total_tokens += sw->n_tokens;
    sw->total_docs += sw->n_docs;
    sw->n_tokens = sw->n_docs = 0;
    sw->first_continues = tail_ordinal != NO_ORDINAL;
}

static SplitWriter *current_split(ShardWriter *w)
{
    if (w->cur < 0) {
        int val = split_draw_val(w->opt.seed, w->opt.val_fraction, w->ordinal) && w->val_taken < w->opt.val_docs;
        w->cur = val ? SPLIT_VAL : SPLIT_TRAIN;
        w->val_taken += (uint64_t)val;
    }
    return &w->split[w->cur];
}

/* Room for n more tokens (up to shard_tokens) and one more index entry. */
static void grow(ShardWriter *w, SplitWriter *sw, uint64_t n)
{
    uint64_t want = sw->n_tokens + n < w->opt.shard_tokens ? sw->n_tokens + n : w->opt.shard_tokens;
    if (want > sw->cap_tokens) {
        uint64_t cap = sw->cap_tokens ? sw->cap_tokens : 4096;
        while (cap < want) cap *= 2;
        sw->cap_tokens = cap < w->opt.shard_tokens ? cap : w->opt.shard_tokens;
        sw->tokens = xrealloc(sw->tokens, sw->cap_tokens * w->width);
    }
    if (sw->n_docs == sw->cap_docs && sw->cap_docs < w->max_docs) {
        uint64_t cap = sw->cap_docs ? 2 * sw->cap_docs : 256;
        sw->cap_docs = cap < w->max_docs ? cap : w->max_docs;
        sw->index = xrealloc(sw->index, sw->cap_docs * 2 * sizeof(uint64_t));
    }
}

void shardwriter_put(ShardWriter *w, const uint32_t *tokens, size_t n)
{
    SplitWriter *sw = current_split(w);
    while (n > 0) {
        if (sw->n_tokens == w->opt.shard_tokens) flush_shard(w, w->cur, w->ordinal);
        size_t room = w->opt.shard_tokens - sw->n_tokens;
        size_t k = n < room ? n : room;
        grow(w, sw, k);
        /* tokens were checked against the vocabulary by the stream reader */
        if (w->width == 2) {
            uint16_t *dst = (uint16_t *)sw->tokens + sw->n_tokens;
            for (size_t i = 0; i < k; i++) dst[i] = (uint16_t)tokens[i];
        } else {
            memcpy((uint32_t *)sw->tokens + sw->n_tokens, tokens, k * 4);
        }
        sw->n_tokens += k;
        tokens += k;
        n -= k;
    }
}

void shardwriter_end_doc(ShardWriter *w)
{
    SplitWriter *sw = current_split(w);
    if (sw->n_docs == w->max_docs) {
        uint64_t last_end = sw->n_docs ? sw->index[2 * sw->n_docs - 2] : 0;
        flush_shard(w, w->cur, sw->n_tokens > last_end ? w->ordinal : NO_ORDINAL);
    }
    grow(w, sw, 0);
    sw->index[2 * sw->n_docs] = sw->n_tokens;
    sw->index[2 * sw->n_docs + 1] = w->ordinal;
    sw->n_docs++;
    w->ordinal++;
    w->cur = -1;
    /* A full shard is written as soon as it fills at a document boundary, so
     * the next shard does not begin with a continuation for nothing. */
    if (sw->n_tokens == w->opt.shard_tokens) flush_shard(w, (int)(sw - w->split), NO_ORDINAL);
}

static cJSON *manifest(const ShardWriter *w)
{
    cJSON *m = json_obj();
    char fp[33];
    fingerprint_hex(fp, w->tok.fingerprint);
    json_add_str(m, "format", "sigma-shards");
    json_add_u64(m, "version", SHARDSET_VERSION);
    cJSON *tok = json_obj();
    json_add_str(tok, "fingerprint", fp);
    json_add_u64(tok, "vocab_size", w->tok.vocab_size);
    json_add(m, "tokenizer", tok);
    json_add_u64(m, "token_width", w->width);
    json_add_str(m, "compression", w->opt.level > 0 ? "zstd" : "none");
    json_add_u64(m, "level", (uint64_t)w->opt.level);
    json_add_u64(m, "shard_tokens", w->opt.shard_tokens);
    cJSON *rule = json_obj();
    json_add_hex64(rule, "seed", w->opt.seed);
    json_add_num(rule, "val_fraction", w->opt.val_fraction);
    if (w->opt.val_docs != UINT64_MAX) json_add_u64(rule, "val_docs", w->opt.val_docs);
    json_add(m, "split_rule", rule);
    json_add_u64(m, "documents", w->split[0].total_docs + w->split[1].total_docs);
    json_add_u64(m, "tokens", w->split[0].total_tokens + w->split[1].total_tokens);
    cJSON *splits = json_obj();
    for (int s = 0; s < N_SPLITS; s++) {
        const SplitWriter *sw = &w->split[s];
        cJSON *o = json_obj(), *list = json_arr();
        json_add_u64(o, "documents", sw->total_docs);
        json_add_u64(o, "tokens", sw->total_tokens);
        for (size_t i = 0; i < sw->n_shards; i++) {
            const ShardEntry *e = &sw->shards[i];
            cJSON *se = json_obj();
            json_add_str(se, "file", e->file);
            json_add_u64(se, "tokens", e->tokens);
            json_add_u64(se, "documents", e->docs);
            json_add_u64(se, "bytes", e->bytes);
            json_add_hex64(se, "xxh3", e->xxh3);
            json_push(list, se);
        }
        json_add(o, "shards", list);
        json_add(splits, split_names[s], o);
    }
    json_add(m, "splits", splits);
    json_add_str(m, "created_by", "sigma-shard " SIGMA_VERSION);
    return m;
}

void shardwriter_close(ShardWriter *w)
{
    if (w->cur >= 0 && w->split[w->cur].n_tokens) BUG("shard writer closed inside a document");
    for (int s = 0; s < N_SPLITS; s++) flush_shard(w, s, NO_ORDINAL);
    cJSON *m = manifest(w);
    char *path = atomic_dir_file(&w->dir, "manifest.json");
    json_write_file_atomic(path, m);
    free(path);
    cJSON_Delete(m);
    atomic_dir_commit(&w->dir);
    for (int s = 0; s < N_SPLITS; s++) {
        SplitWriter *sw = &w->split[s];
        for (size_t i = 0; i < sw->n_shards; i++) free(sw->shards[i].file);
        free(sw->shards);
        free(sw->tokens);
        free(sw->index);
    }
    if (w->zctx) ZSTD_freeCCtx(w->zctx);
    free(w->zbuf);
    free(w);
}

/* ==== the manifest =========================================================== */

void shardset_open(ShardSet *set, const char *dir)
{
    memset(set, 0, sizeof *set);
    set->dir = xstrdup(dir);
    if (!is_dir(dir)) die("%s: not a directory", dir);
    char *path = xasprintf("%s/manifest.json", dir);
    if (!path_exists(path)) die("%s: no manifest.json: not a shard set", dir);
    free(path);
    path = dir_member(dir, "manifest.json", dir);
    cJSON *m = json_parse_file(path);
    const char *what = path;
    if (strcmp(json_req_str(m, "format", what), "sigma-shards") != 0) die("%s: format is not \"sigma-shards\"", what);
    uint64_t version = json_req_u64(m, "version", what);
    if (version != SHARDSET_VERSION) die("%s: version %llu, this sigma reads version %d", what, (unsigned long long)version, SHARDSET_VERSION);
    const cJSON *tok = json_req(m, "tokenizer", what);
    uint64_t vocab = json_req_u64(tok, "vocab_size", what);
    if (vocab == 0 || vocab > UINT32_MAX) die("%s: tokenizer.vocab_size %llu is out of range", what, (unsigned long long)vocab);
    set->tok.vocab_size = (uint32_t)vocab;
    if (!fingerprint_parse(set->tok.fingerprint, json_req_str(tok, "fingerprint", what)))
        die("%s: tokenizer.fingerprint must be 32 hex digits", what);
    uint64_t width = json_req_u64(m, "token_width", what);
    if (width != token_width_for(set->tok.vocab_size))
        die("%s: token_width %llu does not fit vocab_size %u", what, (unsigned long long)width, set->tok.vocab_size);
    set->token_width = (uint32_t)width;
    const char *comp = json_req_str(m, "compression", what);
    uint64_t level = json_req_u64(m, "level", what);
    if (level > (uint64_t)ZSTD_maxCLevel()) die("%s: field 'level' is %llu, outside 0 to %d", what, (unsigned long long)level, ZSTD_maxCLevel());
    set->opt.level = (int)level;
    if (strcmp(comp, "zstd") && strcmp(comp, "none")) die("%s: unknown compression \"%s\"", what, comp);
    if (!strcmp(comp, "none") != (set->opt.level == 0)) die("%s: compression \"%s\" disagrees with level %d", what, comp, set->opt.level);
    set->opt.shard_tokens = json_req_u64(m, "shard_tokens", what);
    if (set->opt.shard_tokens == 0 || set->opt.shard_tokens > SHARD_MAX_TOKENS)
        die("%s: field 'shard_tokens' is %llu, outside 1 to %llu", what, (unsigned long long)set->opt.shard_tokens, SHARD_MAX_TOKENS);
    const cJSON *rule = json_req(m, "split_rule", what);
    set->opt.seed = json_req_hex64(rule, "seed", what);
    set->opt.val_fraction = json_req_num(rule, "val_fraction", what);
    if (!(set->opt.val_fraction >= 0 && set->opt.val_fraction <= 1))
        die("%s: field 'split_rule.val_fraction' is %g, outside 0 to 1", what, set->opt.val_fraction);
    set->opt.val_docs = json_opt_u64(rule, "val_docs", UINT64_MAX, what);
    set->docs = json_req_u64(m, "documents", what);
    set->tokens = json_req_u64(m, "tokens", what);

    const cJSON *splits = json_req(m, "splits", what);
    uint64_t docs = 0, tokens = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        char *swhat = xasprintf("%s: splits.%s", path, split_names[s]);
        const cJSON *o = json_req(splits, split_names[s], swhat);
        SplitInfo *si = &set->split[s];
        si->docs = json_req_u64(o, "documents", swhat);
        si->tokens = json_req_u64(o, "tokens", swhat);
        const cJSON *list = json_req(o, "shards", swhat);
        if (!cJSON_IsArray(list)) die("%s: shards must be an array", swhat);
        si->n_shards = (size_t)cJSON_GetArraySize(list);
        si->shards = xcalloc(si->n_shards ? si->n_shards : 1, sizeof(ShardEntry));
        uint64_t sd = 0, st = 0;
        size_t i = 0;
        const cJSON *se;
        cJSON_ArrayForEach(se, list) {
            char *ewhat = xasprintf("%s.shards[%zu]", swhat, i);
            ShardEntry *e = &si->shards[i];
            const char *file = json_req_str(se, "file", ewhat);
            free(dir_member(dir, file, ewhat));   /* a plain name inside DIR, links out of it refused */
            if (file[0] == '.') die("%s: bad file name \"%s\"", ewhat, file);
            e->file = xstrdup(file);
            e->tokens = json_req_u64(se, "tokens", ewhat);
            if (e->tokens > set->opt.shard_tokens)
                die("%s: field 'tokens' is %llu, above shard_tokens %llu", ewhat, (unsigned long long)e->tokens,
                    (unsigned long long)set->opt.shard_tokens);
            e->docs = json_req_u64(se, "documents", ewhat);
            e->bytes = json_req_u64(se, "bytes", ewhat);
            e->xxh3 = json_req_hex64(se, "xxh3", ewhat);
            if (sd + e->docs < sd) die("%s: the documents overflow", ewhat);
            sd += e->docs;
            st += e->tokens;   /* each at most SHARD_MAX_TOKENS: cannot overflow within 2^32 shards */
            free(ewhat);
            i++;
        }
        if (sd != si->docs || st != si->tokens)
            die("%s: the shards hold %llu documents and %llu tokens, the split says %llu and %llu", swhat,
                (unsigned long long)sd, (unsigned long long)st, (unsigned long long)si->docs, (unsigned long long)si->tokens);
        if (docs + sd < docs || tokens + st < tokens) die("%s: the totals overflow", swhat);
        docs += sd;
        tokens += st;
        free(swhat);
    }
    if (docs != set->docs || tokens != set->tokens)
        die("%s: the splits hold %llu documents and %llu tokens, the manifest says %llu and %llu", path,
            (unsigned long long)docs, (unsigned long long)tokens, (unsigned long long)set->docs, (unsigned long long)set->tokens);
    cJSON_Delete(m);
    free(path);
}

void shardset_free(ShardSet *set)
{
    for (int s = 0; s < N_SPLITS; s++) {
        for (size_t i = 0; i < set->split[s].n_shards; i++) free(set->split[s].shards[i].file);
        free(set->split[s].shards);
    }
    free(set->dir);
    memset(set, 0, sizeof *set);
}

/* ==== one shard ================================================================ */

void shard_load(Shard *s, const ShardSet *set, int split, size_t i)
{
    memset(s, 0, sizeof *s);
    const ShardEntry *e = &set->split[split].shards[i];
    char *path = shardset_path(set, split, i);
    free(dir_member(set->dir, e->file, path));   /* it may have become a link since the manifest was read */
    struct stat st;
    if (stat(path, &st) != 0) die("%s: missing shard (%s)", path, strerror(errno));
    if ((uint64_t)st.st_size != e->bytes)
        die("%s: %llu bytes, the manifest says %llu", path, (unsigned long long)st.st_size, (unsigned long long)e->bytes);
    size_t len;
    uint8_t *buf = (uint8_t *)read_file(path, (size_t)e->bytes, &len);
    if (len != e->bytes) die("%s: changed while being read", path);
    if (XXH3_64bits(buf, len) != e->xxh3) die("%s: checksum mismatch: the file is corrupt", path);
    if (len < SHARD_HEADER_BYTES) die("%s: truncated header", path);

    const uint8_t *h = buf;
    if (memcmp(h + H_MAGIC, SHARD_MAGIC, 8) != 0) die("%s: not a sigma shard (bad magic at byte 0)", path);
    if (XXH3_64bits(h, H_HEADER_HASH) != get64(h, H_HEADER_HASH)) die("%s: header checksum mismatch (byte %d)", path, H_HEADER_HASH);
    if (get32(h, H_VERSION) != SHARD_VERSION) die("%s: shard version %u, this sigma reads %u (byte %d)", path, get32(h, H_VERSION), SHARD_VERSION, H_VERSION);
    uint32_t width = get32(h, H_WIDTH), vocab = get32(h, H_VOCAB), comp = get32(h, H_COMPRESSION);
    if (width != set->token_width) die("%s: token width %u, the manifest says %u (byte %d)", path, width, set->token_width, H_WIDTH);
    if (vocab != set->tok.vocab_size) die("%s: vocabulary %u, the manifest says %u (byte %d)", path, vocab, set->tok.vocab_size, H_VOCAB);
    if (comp != (set->opt.level > 0 ? COMPRESS_ZSTD : COMPRESS_RAW)) die("%s: compression %u disagrees with the manifest (byte %d)", path, comp, H_COMPRESSION);
    if (memcmp(h + H_FINGERPRINT, set->tok.fingerprint, 16) != 0) die("%s: tokenizer fingerprint differs from the manifest's (byte %d)", path, H_FINGERPRINT);
    if (get32(h, H_RESERVED) != 0) die("%s: reserved header bytes are not zero (byte %d)", path, H_RESERVED);
    for (int b = H_END; b < SHARD_HEADER_BYTES; b++)
        if (h[b]) die("%s: reserved header bytes are not zero (byte %d)", path, b);
    s->n_tokens = get64(h, H_TOKENS);
    s->n_docs = get64(h, H_DOCS);
    s->first_continues = (int)get32(h, H_FIRST_CONTINUES);
    s->tail_ordinal = get64(h, H_TAIL_ORDINAL);
    uint64_t payload_bytes = get64(h, H_PAYLOAD_BYTES);
    if (s->n_tokens != e->tokens || s->n_docs != e->docs)
        die("%s: holds %llu tokens and %llu documents, the manifest says %llu and %llu", path, (unsigned long long)s->n_tokens,
            (unsigned long long)s->n_docs, (unsigned long long)e->tokens, (unsigned long long)e->docs);
    if (s->first_continues > 1) die("%s: bad first_continues flag (byte %d)", path, H_FIRST_CONTINUES);
    if (s->n_docs > (len - SHARD_HEADER_BYTES) / 16 || payload_bytes > len || SHARD_HEADER_BYTES + 16 * s->n_docs + payload_bytes != len)
        die("%s: sizes in the header do not add up to the file size of %zu bytes (n_docs at byte %d, payload bytes at byte %d)",
            path, len, H_DOCS, H_PAYLOAD_BYTES);
    /* sizes against the manifest and the file before anything is allocated for the tokens */
    if (s->n_tokens > set->opt.shard_tokens)
        die("%s: n_tokens (byte %d) is %llu, above the set's shard_tokens %llu", path, H_TOKENS, (unsigned long long)s->n_tokens,
            (unsigned long long)set->opt.shard_tokens);

    const uint8_t *index = buf + SHARD_HEADER_BYTES;
    const uint8_t *payload = index + 16 * s->n_docs;
    if (XXH3_64bits(index, 16 * s->n_docs) != get64(h, H_INDEX_HASH)) die("%s: document index checksum mismatch", path);
    if (XXH3_64bits(payload, payload_bytes) != get64(h, H_PAYLOAD_HASH)) die("%s: payload checksum mismatch", path);

    size_t raw_bytes = s->n_tokens * width;
    if (comp == COMPRESS_ZSTD) {
        unsigned long long content = ZSTD_getFrameContentSize(payload, payload_bytes);
        if (content != raw_bytes) die("%s: the zstd frame holds %llu bytes, expected %zu", path, content, raw_bytes);
        /* zstd expands at most 32768-fold (a 4-byte RLE block per 128 KiB) */
        if (raw_bytes / 32768 > payload_bytes)
            die("%s: %llu bytes of zstd payload cannot hold the %zu bytes that n_tokens (byte %d) says", path,
                (unsigned long long)payload_bytes, raw_bytes, H_TOKENS);
    } else if (payload_bytes != raw_bytes) {
        die("%s: payload is %llu bytes, n_tokens (byte %d) x width makes %zu", path, (unsigned long long)payload_bytes, H_TOKENS, raw_bytes);
    }
    uint8_t *raw = xmalloc(raw_bytes);
    if (comp == COMPRESS_ZSTD) {
        size_t got = ZSTD_decompress(raw, raw_bytes, payload, payload_bytes);
        if (ZSTD_isError(got) || got != raw_bytes) die("%s: zstd: %s", path, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    } else {
        memcpy(raw, payload, raw_bytes);
    }
    if (XXH3_64bits(raw, raw_bytes) != get64(h, H_TOKENS_HASH)) die("%s: token checksum mismatch", path);

    s->tokens = xmalloc((s->n_tokens ? s->n_tokens : 1) * sizeof(uint32_t));
    for (uint64_t t = 0; t < s->n_tokens; t++) {
        uint32_t v;
        if (width == 2) { uint16_t v16; memcpy(&v16, raw + 2 * t, 2); v = v16; }
        else memcpy(&v, raw + 4 * t, 4);
        if (v >= vocab) die("%s: token %u at position %llu is outside the vocabulary of %u", path, v, (unsigned long long)t, vocab);
        s->tokens[t] = v;
    }
    free(raw);

    s->doc_end = xmalloc((s->n_docs ? s->n_docs : 1) * sizeof(uint64_t));
    s->doc_ordinal = xmalloc((s->n_docs ? s->n_docs : 1) * sizeof(uint64_t));
    for (uint64_t d = 0; d < s->n_docs; d++) {
        s->doc_end[d] = get64(index, (int)(16 * d));
        s->doc_ordinal[d] = get64(index, (int)(16 * d + 8));
        if (s->doc_end[d] > s->n_tokens || (d && s->doc_end[d] < s->doc_end[d - 1]))
            die("%s: document index entry %llu has a bad end offset", path, (unsigned long long)d);
        if (d && s->doc_ordinal[d] <= s->doc_ordinal[d - 1])
            die("%s: document index entry %llu is out of order", path, (unsigned long long)d);
    }
    uint64_t last_end = s->n_docs ? s->doc_end[s->n_docs - 1] : 0;
    if ((s->tail_ordinal == NO_ORDINAL) != (last_end == s->n_tokens && !(s->n_docs == 0 && s->first_continues)))
        die("%s: tail_ordinal disagrees with the tokens after the last document", path);
    free(buf);
    free(path);
}

void shard_free(Shard *s)
{
    free(s->tokens);
    free(s->doc_end);
    free(s->doc_ordinal);
    memset(s, 0, sizeof *s);
}

/* ==== reading documents back in order ====================================== */

typedef struct {
    int split;
    size_t next_shard;         /* the next shard to load */
    int loaded;
    Shard sh;
    uint64_t pos;              /* next token in sh */
    uint64_t k;                /* next index entry in sh */
    uint64_t last_ordinal;     /* of the last document started, for order checks */
    int started;
} Cursor;

struct SetReader {
    const ShardSet *set;
    Cursor c[N_SPLITS];
    int n_cursors;
    int active;                /* cursor holding the document being read, -1 between documents */
    uint64_t doc_ordinal;      /* its ordinal */
    int merged;                /* both splits: ordinals must be 0, 1, 2, ... */
    uint64_t expect;           /* next ordinal when merged */
};

static char *cursor_name(const SetReader *r, const Cursor *c, size_t shard)
{
    return shardset_path(r->set, c->split, shard);
}

static int cursor_load_next(SetReader *r, Cursor *c, int inside_doc)
{
    if (c->loaded) { shard_free(&c->sh); c->loaded = 0; }
    if (c->next_shard == r->set->split[c->split].n_shards) return 0;
    shard_load(&c->sh, r->set, c->split, c->next_shard);
    c->loaded = 1;
    c->pos = c->k = 0;
    c->next_shard++;
    if (c->sh.first_continues != inside_doc) {
        char *name = cursor_name(r, c, c->next_shard - 1);
        die("%s: %s a document, but the previous shard %s", name, c->sh.first_continues ? "begins inside" : "begins with",
            inside_doc ? "left one open" : "ended at a document boundary");
    }
    return 1;
}

/* The ordinal of the next document of this split, or 0 when it has none. */
static int cursor_head(SetReader *r, Cursor *c, uint64_t *ordinal)
{
    for (;;) {
        if (!c->loaded && !cursor_load_next(r, c, 0)) return 0;
        if (c->k < c->sh.n_docs) { *ordinal = c->sh.doc_ordinal[c->k]; break; }
        if (c->pos < c->sh.n_tokens) { *ordinal = c->sh.tail_ordinal; break; }
        shard_free(&c->sh);
        c->loaded = 0;
    }
    if (c->started && *ordinal <= c->last_ordinal) {
        char *name = cursor_name(r, c, c->next_shard - 1);
        die("%s: document %llu comes after document %llu: out of order", name, (unsigned long long)*ordinal,
            (unsigned long long)c->last_ordinal);
    }
    if (*ordinal >= r->set->docs) {
        char *name = cursor_name(r, c, c->next_shard - 1);
        die("%s: document number %llu, but the set has %llu documents", name, (unsigned long long)*ordinal,
            (unsigned long long)r->set->docs);
    }
    return 1;
}

static size_t cursor_read(SetReader *r, Cursor *c, uint32_t *buf, size_t cap, int *doc_end)
{
    for (;;) {
        Shard *s = &c->sh;
        uint64_t end = c->k < s->n_docs ? s->doc_end[c->k] : s->n_tokens;
        size_t n = end - c->pos < cap ? (size_t)(end - c->pos) : cap;
        memcpy(buf, s->tokens + c->pos, n * sizeof(uint32_t));
        c->pos += n;
        if (c->k < s->n_docs && c->pos == end) {
            if (s->doc_ordinal[c->k] != r->doc_ordinal) {
                char *name = cursor_name(r, c, c->next_shard - 1);
                die("%s: document %llu continues as document %llu", name, (unsigned long long)r->doc_ordinal,
                    (unsigned long long)s->doc_ordinal[c->k]);
            }
            c->k++;
            *doc_end = 1;
            return n;
        }
        if (n > 0) return n;
        /* the document goes on in the next shard */
        if (s->tail_ordinal != r->doc_ordinal) {
            char *name = cursor_name(r, c, c->next_shard - 1);
            die("%s: tail document %llu, expected %llu", name, (unsigned long long)s->tail_ordinal, (unsigned long long)r->doc_ordinal);
        }
        if (!cursor_load_next(r, c, 1)) {
            char *name = cursor_name(r, c, c->next_shard - 1);
            die("%s: the split ends inside document %llu (a shard is missing from the manifest?)", name,
                (unsigned long long)r->doc_ordinal);
        }
    }
}

SetReader *setreader_open(const ShardSet *set, int split)
{
    SetReader *r = xcalloc(1, sizeof *r);
    r->set = set;
    r->active = -1;
    r->merged = split < 0;
    for (int s = 0; s < N_SPLITS; s++) {
        if (!r->merged && s != split) continue;
        r->c[r->n_cursors++].split = s;
    }
    return r;
}

size_t setreader_read(SetReader *r, uint32_t *buf, size_t cap, int *doc_end)
{
    *doc_end = 0;
    if (r->active < 0) {
        int best = -1;
        uint64_t best_ord = 0;
        for (int i = 0; i < r->n_cursors; i++) {
            uint64_t ord;
            if (cursor_head(r, &r->c[i], &ord) && (best < 0 || ord < best_ord)) { best = i; best_ord = ord; }
        }
        if (best < 0) {
            if (r->merged && r->expect != r->set->docs)
                die("%s: the shards hold %llu documents, the manifest says %llu", r->set->dir,
                    (unsigned long long)r->expect, (unsigned long long)r->set->docs);
            return 0;
        }
        if (r->merged && best_ord != r->expect)
            die("%s: document %llu is missing from both splits", r->set->dir, (unsigned long long)r->expect);
        r->expect++;
        r->active = best;
        r->doc_ordinal = best_ord;
        r->c[best].last_ordinal = best_ord;
        r->c[best].started = 1;
    }
    size_t n = cursor_read(r, &r->c[r->active], buf, cap, doc_end);
    if (*doc_end) r->active = -1;
    return n;
}

void setreader_close(SetReader *r)
{
    for (int i = 0; i < r->n_cursors; i++)
        if (r->c[i].loaded) shard_free(&r->c[i].sh);
    free(r);
}
