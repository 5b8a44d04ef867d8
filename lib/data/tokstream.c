/* Token stream reader and writer; the format is described in tokstream.h
 * and sigma-formats(5). */
#include "data/tokstream.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sigma's file formats are little-endian and so far read by memcpy"
#endif

#define WRITE_CHUNK 65536

static XXH3_state_t *new_hash(void)
{
    XXH3_state_t *h = XXH3_createState();
    if (!h) BUG("out of memory");
    XXH3_64bits_reset(h);
    return h;
}

void tokwriter_open(TokWriter *w, FILE *f, const char *name, const TokHeader *hdr)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->name = name;
    w->hdr = *hdr;
    if (hdr->vocab_size == 0) BUG("token stream with an empty vocabulary");
    w->cap = WRITE_CHUNK;
    w->buf = xmalloc(w->cap * sizeof(uint32_t));
    w->hash = new_hash();
    uint8_t h[TOKSTREAM_HEADER_BYTES];
    uint32_t version = TOKSTREAM_VERSION;
    memcpy(h, TOKSTREAM_MAGIC, 8);
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &hdr->vocab_size, 4);
    memcpy(h + 16, hdr->fingerprint, 16);
    uint64_t check = XXH3_64bits(h, TOKSTREAM_V1_HEADER_BYTES);
    memcpy(h + 32, &check, 8);
    xfwrite(h, sizeof h, f, name);
}

static void write_record(TokWriter *w, int ends)
{
    uint32_t word = (uint32_t)w->len | (ends ? TOKSTREAM_END_BIT : 0);
    xfwrite(&word, 4, w->f, w->name);
    xfwrite(w->buf, w->len * sizeof(uint32_t), w->f, w->name);
    XXH3_64bits_update(w->hash, w->buf, w->len * sizeof(uint32_t));
    w->tokens += w->len;
    w->len = 0;
}

void tokwriter_put(TokWriter *w, const uint32_t *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] >= w->hdr.vocab_size)
            die("%s: token %u at position %llu is outside the vocabulary of %u", w->name, tokens[i],
                (unsigned long long)(w->tokens + w->len), w->hdr.vocab_size);
        w->buf[w->len++] = tokens[i];
        if (w->len == w->cap) { write_record(w, 0); w->in_doc = 1; }
    }
}

void tokwriter_end_doc(TokWriter *w)
{
    write_record(w, 1);
    w->in_doc = 0;
    w->docs++;
}

void tokwriter_close(TokWriter *w)
{
    if (w->len || w->in_doc) BUG("token stream closed with a document still open");
    uint32_t word = TOKSTREAM_TRAILER;
    uint64_t t[3] = {w->docs, w->tokens, XXH3_64bits_digest(w->hash)};
    xfwrite(&word, 4, w->f, w->name);
    xfwrite(t, sizeof t, w->f, w->name);
    xfflush(w->f, w->name);
    XXH3_freeState(w->hash);
    free(w->buf);
    w->buf = NULL;
    w->hash = NULL;
}

/* ---- reader --------------------------------------------------------------- */

static int read_at(TokReader *r, void *buf, size_t n)
{
    int got = xfread_exact(buf, n, r->f, r->name, r->offset);
    if (got) r->offset += n;
    return got;
}

void tokreader_open(TokReader *r, FILE *f, const char *name)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->name = name;
    uint8_t h[TOKSTREAM_HEADER_BYTES];
    if (!read_at(r, h, TOKSTREAM_V1_HEADER_BYTES)) die("%s: empty input, not a token stream", name);
    if (memcmp(h, TOKSTREAM_MAGIC, 8) != 0) die("%s: not a sigma token stream (bad magic at byte 0)", name);
    uint32_t version;
    memcpy(&version, h + 8, 4);
    if (version != 1 && version != TOKSTREAM_VERSION)
        die("%s: token stream version %u, this sigma reads versions 1 and %u (byte 8)", name, version, TOKSTREAM_VERSION);
    if (version >= 2) {   /* the vocabulary size and fingerprint are checked before they are used */
        uint64_t check;
        if (!read_at(r, h + TOKSTREAM_V1_HEADER_BYTES, 8)) die("%s: truncated: the header ends at byte 32", name);
        memcpy(&check, h + TOKSTREAM_V1_HEADER_BYTES, 8);
        if (check != XXH3_64bits(h, TOKSTREAM_V1_HEADER_BYTES))
            die("%s: header checksum mismatch (byte 32): the vocabulary size or tokenizer fingerprint (bytes 12-31) is corrupt", name);
    }
    memcpy(&r->hdr.vocab_size, h + 12, 4);
    if (r->hdr.vocab_size == 0) die("%s: vocabulary size 0 in header (byte 12)", name);
    memcpy(r->hdr.fingerprint, h + 16, 16);
    r->hash = new_hash();
}

static void read_trailer(TokReader *r, int open_doc)
{
    uint64_t t[3];
    uint64_t at = r->offset;
    if (!read_at(r, t, sizeof t)) die("%s: truncated trailer at byte %llu", r->name, (unsigned long long)at);
    if (open_doc) die("%s: trailer at byte %llu while a document is still open", r->name, (unsigned long long)at - 4);
    if (t[0] != r->docs || t[1] != r->tokens)
        die("%s: trailer at byte %llu says %llu documents and %llu tokens, the stream held %llu and %llu", r->name,
            (unsigned long long)at, (unsigned long long)t[0], (unsigned long long)t[1], (unsigned long long)r->docs,
            (unsigned long long)r->tokens);
    if (t[2] != XXH3_64bits_digest(r->hash))
        die("%s: checksum mismatch: the tokens are corrupt (trailer at byte %llu)", r->name, (unsigned long long)at);
    if (fgetc(r->f) != EOF) die("%s: data after the trailer at byte %llu", r->name, (unsigned long long)r->offset);
    r->done = 1;
}

size_t tokreader_read(TokReader *r, uint32_t *buf, size_t cap, int *doc_end)
{
    *doc_end = 0;
    if (r->done) return 0;
    while (r->left == 0 && !r->ends) {
        uint32_t word;
        uint64_t at = r->offset;
        if (!read_at(r, &word, 4)) die("%s: truncated: the stream ends at byte %llu without its trailer", r->name, (unsigned long long)at);
        if (word == TOKSTREAM_TRAILER) {
            read_trailer(r, r->tokens_in_doc_open);
            return 0;
        }
        r->left = word & ~TOKSTREAM_END_BIT;
        r->ends = (word & TOKSTREAM_END_BIT) != 0;
        if (r->left == 0 && !r->ends) die("%s: empty record at byte %llu", r->name, (unsigned long long)at);
    }
    size_t n = r->left < cap ? r->left : cap;
    if (n) {
        uint64_t at = r->offset;
        if (!read_at(r, buf, n * 4)) die("%s: truncated: the stream ends at byte %llu inside a record", r->name, (unsigned long long)at);
        /* a max over the block vectorizes; the offender is looked for only when there is one */
        uint32_t max = 0;
        for (size_t i = 0; i < n; i++) max = buf[i] > max ? buf[i] : max;
        if (max >= r->hdr.vocab_size)
            for (size_t i = 0; i < n; i++)
                if (buf[i] >= r->hdr.vocab_size)
                    die("%s: token %u at byte %llu is outside the vocabulary of %u", r->name, buf[i],
                        (unsigned long long)(at + 4 * i), r->hdr.vocab_size);
        XXH3_64bits_update(r->hash, buf, n * 4);
        r->tokens += n;
        r->left -= (uint32_t)n;
        r->tokens_in_doc_open = 1;
    }
    if (r->left == 0 && r->ends) {
        r->ends = 0;
        r->docs++;
        r->tokens_in_doc_open = 0;
        *doc_end = 1;
    }
    return n;
}

void tokreader_close(TokReader *r)
{
    if (r->hash) XXH3_freeState(r->hash);
    r->hash = NULL;
}

void fingerprint_hex(char out[33], const uint8_t fp[16])
{
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", fp[i]);
}

int fingerprint_parse(uint8_t fp[16], const char *hex)
{
    if (!hex || strlen(hex) != 32) return 0;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
        fp[i] = (uint8_t)v;
    }
    return 1;
}

static int fingerprint_known(const uint8_t fp[16])
{
    static const uint8_t zero[16];
    return memcmp(fp, zero, 16) != 0;
}

void tokenizer_match(const TokHeader *a, const char *a_name, const TokHeader *b, const char *b_name)
{
    int a_known = fingerprint_known(a->fingerprint), b_known = fingerprint_known(b->fingerprint);
    if (a_known != b_known) {
        warn("%s records no tokenizer; taking it to be %s's", a_known ? b_name : a_name, a_known ? a_name : b_name);
        return;
    }
    if (!memcmp(a->fingerprint, b->fingerprint, 16) && a->vocab_size == b->vocab_size) return;   /* both unknown: by vocabulary */
    char x[33], y[33];
    fingerprint_hex(x, a->fingerprint);
    fingerprint_hex(y, b->fingerprint);
    die("%s: made with another tokenizer: %s (vocabulary %u) differs from %s's %s (vocabulary %u)", a_name, x, a->vocab_size,
        b_name, y, b->vocab_size);
}
