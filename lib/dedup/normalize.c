/* datatrove-compatible text normalization, word text and shingle hashes. */
#include "dedup/normalize.h"
#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#define XXH_INLINE_ALL   /* the library's header-only form: no call a shingle */
#include <xxhash.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The spaces of a text, found 64 bytes at a time as a bit mask (SSE2, which
 * every x86-64 has; elsewhere a byte at a time): words are cut at spaces,
 * and a call or a branch a byte is most of the time of cutting them. */
typedef struct {
    const char *t;
    size_t n, base;   /* the mask covers t[base .. base + 64) */
    uint64_t mask;
} Spaces;

static inline uint64_t space_mask(const char *t, size_t base, size_t n)
{
    uint64_t m = 0;
#ifdef __SSE2__
    if (n - base >= 64) {
        const __m128i sp = _mm_set1_epi8(' ');
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + base + 16 * k));
            m |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, sp)) << (16 * k);
        }
        return m;
    }
#endif
    for (size_t i = base; i < n && i < base + 64; i++) m |= (uint64_t)(t[i] == ' ') << (i - base);
    return m;
}

static inline void spaces_init(Spaces *s, const char *t, size_t n)
{
    *s = (Spaces){t, n, 0, n ? space_mask(t, 0, n) : 0};
}

/* The position of the next space, or n when there is none. */
static inline size_t spaces_next(Spaces *s)
{
    while (!s->mask) {
        s->base += 64;
        if (s->base >= s->n) return s->n;
        s->mask = space_mask(s->t, s->base, s->n);
    }
    size_t p = s->base + (size_t)__builtin_ctzll(s->mask);
    s->mask &= s->mask - 1;
    return p;
}

void ddbuf_reserve(DdBuf *b, size_t cap)
{
    if (cap <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < cap) c *= 2;
    b->p = xrealloc(b->p, c);
    b->cap = c;
}

void ddbuf_free(DdBuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* datatrove's PUNCTUATION list beyond ASCII (every ASCII character that is
 * neither a letter nor a digit is punctuation or white space there, and
 * both become a space). U+FF11 (fullwidth 1) is on the list but is a digit,
 * so the number rule sees it first. */
static int is_punct(int32_t c)
{
    if (c >= 0x7f && c <= 0x9f) return 1;
    switch (c) {
    case 0xab: case 0xb4: case 0xbb: case 0x2013: case 0x2014: case 0x2019:
    case 0x201c: case 0x201d: case 0x201e: case 0x2026: case 0x2236: case 0x2501:
    case 0x25ba: case 0x3001: case 0x3002: case 0x3008: case 0x3009: case 0x300a:
    case 0x300b: case 0x300c: case 0x300d: case 0x3010: case 0x3011: case 0xff01:
    case 0xff05: case 0xff08: case 0xff09: case 0xff0c: case 0xff0e: case 0xff11:
    case 0xff1a: case 0xff1b: case 0xff1f: case 0xff5e:
        return 1;
    }
    return 0;
}

/* Python's str.isspace() beyond ASCII, which is what datatrove's \s and
 * strip() use. */
static int is_space(int32_t c)
{
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static int is_num_sep(int32_t c)
{
    return c == '.' || c == ',' || c == 0x60c || c == 0x66b || c == 0x2396 || c == 0x2397 || c == 0x2398;
}

/* The code point at s[i] (lowercased), its byte length in *k; -1 for a byte
 * that is not valid UTF-8. */
static int32_t next_cp(const uint8_t *s, size_t len, size_t i, size_t *k)
{
    if (s[i] < 0x80) {
        *k = 1;
        return s[i];
    }
    int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
    if (n < 0) {
        *k = 1;
        return -1;
    }
    *k = (size_t)n;
    return cp;
}

static int is_digit_cp(int32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9';
    return c > 0 && utf8proc_category(c) == UTF8PROC_CATEGORY_ND;
}

/* End of the number starting at s[i]: digits, then at most one separator
 * followed by more digits (datatrove's \p{Nd}+([.,...]\p{Nd}+)?). */
static size_t number_end(const uint8_t *s, size_t len, size_t i)
{
    size_t k;
    while (i < len && is_digit_cp(next_cp(s, len, i, &k))) i += k;
    if (i < len && is_num_sep(next_cp(s, len, i, &k))) {
        size_t j = i + k, k2;
        if (j < len && is_digit_cp(next_cp(s, len, j, &k2))) {
            i = j;
            while (i < len && is_digit_cp(next_cp(s, len, i, &k))) i += k;
        }
    }
    return i;
}

/* ASCII's part of the normalization, by byte: a letter's lowercase form,
 * DIGIT for a digit, 0 for the rest (punctuation and white space, which
 * become a space). */
enum { DIGIT = 1 };
static const uint8_t ascii_map[128] = {
    ['0'] = DIGIT, ['1'] = DIGIT, ['2'] = DIGIT, ['3'] = DIGIT, ['4'] = DIGIT,
    ['5'] = DIGIT, ['6'] = DIGIT, ['7'] = DIGIT, ['8'] = DIGIT, ['9'] = DIGIT,
#define L(c) [c] = c, [c - 32] = c
    L('a'), L('b'), L('c'), L('d'), L('e'), L('f'), L('g'), L('h'), L('i'), L('j'), L('k'), L('l'), L('m'),
    L('n'), L('o'), L('p'), L('q'), L('r'), L('s'), L('t'), L('u'), L('v'), L('w'), L('x'), L('y'), L('z'),
#undef L
};

size_t dd_normalize_datatrove(DdBuf *out, const char *text, size_t len)
{
    const uint8_t *s = (const uint8_t *)text;
    /* Room for the rest of the input and 64 bytes more at every step: ASCII
     * never writes more than it reads, so only the other characters check. */
    ddbuf_reserve(out, len + 64);
    char *p = out->p;
    size_t o = 0, i = 0;
    int pend = 0;   /* a white-space run waits to become one space */
#define FLUSH_SPACE() do { if (pend && o > 0) p[o++] = ' '; pend = 0; } while (0)
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            uint8_t m = ascii_map[c];
            if (m > DIGIT) {
                FLUSH_SPACE();
                p[o++] = (char)m;
                /* the rest of the word, which is most of the text */
                while (++i < len && s[i] < 0x80 && ascii_map[s[i]] > DIGIT) p[o++] = (char)ascii_map[s[i]];
            } else if (m == DIGIT) {
                FLUSH_SPACE();
                p[o++] = '0';
                i = number_end(s, len, i);
            } else {
                pend = 1;
                i++;
            }
            continue;
        }
        size_t k;
        int32_t cp = next_cp(s, len, i, &k);
        if (cp < 0) {   /* not UTF-8: the byte as it is */
            FLUSH_SPACE();
            p[o++] = (char)c;
            i++;
            continue;
        }
        cp = utf8proc_tolower(cp);
        if (is_digit_cp(cp)) {
            FLUSH_SPACE();
            p[o++] = '0';
            i = number_end(s, len, i);
            continue;
        }
        i += k;
        if (is_punct(cp) || is_space(cp)) {
            pend = 1;
            continue;
        }
        /* A character that normalizes to nothing (an accent alone) still
         * separates white space, as in datatrove, where accents go last. */
        FLUSH_SPACE();
        utf8proc_int32_t dec[8];
        int bound = 0;
        utf8proc_ssize_t nd = utf8proc_decompose_char(cp, dec, 8, UTF8PROC_DECOMPOSE, &bound);
        if (nd < 0 || nd > 8) {
            dec[0] = cp;
            nd = 1;
        }
        for (utf8proc_ssize_t d = 0; d < nd; d++) {
            if (utf8proc_category(dec[d]) == UTF8PROC_CATEGORY_MN) continue;
            o += (size_t)utf8proc_encode_char(dec[d], (utf8proc_uint8_t *)p + o);
        }
        if (out->cap - o < len - i + 64) {
            out->len = o;
            ddbuf_reserve(out, o + len - i + 64);
            p = out->p;
        }
    }
#undef FLUSH_SPACE
    while (o > 0 && p[o - 1] == ' ') o--;
    out->len = o;
    return o;
}

static int ascii_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Copy with each run of white space (ASCII, or only ' ' when only_space)
 * made one space and none at either end. */
static size_t collapse(char *dst, const char *src, size_t len, int only_space)
{
    size_t o = 0;
    int pend = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)src[i];
        if (only_space ? c == ' ' : ascii_ws(c)) {
            pend = 1;
            continue;
        }
        if (pend && o > 0) dst[o++] = ' ';
        pend = 0;
        dst[o++] = (char)c;
    }
    return o;
}

/* datatrove splits English into words with spaCy, whose exceptions cut
 * these contractions even without their apostrophe (which normalization
 * has removed): "cannot" is "can not" and "dont" is "do nt" there. */
static const char *const spacy_splits[] = {
    "ai nt", "are nt", "can not", "ca nt", "ca nt ve", "could nt", "could nt ve", "could ve", "dare nt",
    "did nt", "did nt ve", "does nt", "does nt ve", "do nt", "do nt ve", "gon na", "got ta", "had nt",
    "had nt ve", "has nt", "have nt", "he d", "he d ve", "he ll ve", "he s", "how d", "how d ve", "how ll",
    "how ll ve", "how re", "how s", "how ve", "i d", "i d ve", "i ll ve", "i m", "i m a", "is nt", "it d",
    "it d ve", "it ll", "it ll ve", "i ve", "may nt", "may nt ve", "might nt", "might nt ve", "might ve",
    "must nt", "must nt ve", "must ve", "need nt", "need nt ve", "not ve", "ought nt", "ought nt ve",
    "sha nt", "sha nt ve", "she d ve", "she ll ve", "she s", "should nt", "should nt ve", "should ve",
    "that d", "that d ve", "that ll", "that ll ve", "that s", "there d", "there d ve", "there ll",
    "there ll ve", "there re", "there s", "there ve", "these d", "these d ve", "these ll", "these ll ve",
    "these re", "these ve", "they d", "they d ve", "they ll", "they ll ve", "they re", "they ve", "this d",
    "this d ve", "this ll", "this ll ve", "this s", "those d", "those d ve", "those ll", "those ll ve",
    "those re", "those ve", "was nt", "we d", "we d ve", "we ll ve", "were nt", "we ve", "what d",
    "what d ve", "what ll", "what ll ve", "what re", "what s", "what ve", "when d", "when d ve", "when ll",
    "when ll ve", "when re", "when s", "when ve", "where d", "where d ve", "where ll", "where ll ve",
    "where re", "where s", "where ve", "who d", "who d ve", "who ll", "who ll ve", "who s", "who ve",
    "why d", "why d ve", "why ll", "why ll ve", "why re", "why s", "why ve", "wo nt", "wo nt ve",
    "would nt", "would nt ve", "would ve", "y all", "you d", "you d ve", "you ll", "you ll ve", "you re",
    "you ve",
};
#define N_SPLITS (sizeof spacy_splits / sizeof spacy_splits[0])

/* Open-addressing table from the joined word to its split form, behind a
 * filter that most words fail at once: for the first and last byte of the
 * word (each taken mod 32, which keeps letters apart), the lengths of the
 * joined words that begin and end so. */
enum { SPLIT_SLOTS = 512, SPLIT_MAXLEN = 16 };
static struct {
    char word[SPLIT_MAXLEN];
    size_t len;
    const char *split;
} split_table[SPLIT_SLOTS];
static uint16_t split_filter[32][32];
static pthread_once_t split_once = PTHREAD_ONCE_INIT;

static int split_candidate(const char *w, size_t n)
{
    return n < 16 && (split_filter[(uint8_t)w[0] & 31][(uint8_t)w[n - 1] & 31] >> n & 1);
}

static size_t split_slot(const char *w, size_t n)
{
    return (size_t)XXH3_64bits(w, n) & (SPLIT_SLOTS - 1);
}

static void split_table_build(void)
{
    for (size_t i = 0; i < N_SPLITS; i++) {
        char joined[SPLIT_MAXLEN];
        size_t n = 0;
        for (const char *c = spacy_splits[i]; *c; c++)
            if (*c != ' ') joined[n++] = *c;
        size_t k = split_slot(joined, n);
        while (split_table[k].split) k = (k + 1) & (SPLIT_SLOTS - 1);
        memcpy(split_table[k].word, joined, n);
        split_table[k].len = n;
        split_table[k].split = spacy_splits[i];
        split_filter[(uint8_t)joined[0] & 31][(uint8_t)joined[n - 1] & 31] |= (uint16_t)(1u << n);
    }
}

static const char *split_lookup(const char *w, size_t n)
{
    if (n < 2 || n > 10 || !split_candidate(w, n)) return NULL;
    for (size_t k = split_slot(w, n); split_table[k].split; k = (k + 1) & (SPLIT_SLOTS - 1))
        if (split_table[k].len == n && memcmp(split_table[k].word, w, n) == 0) return split_table[k].split;
    return NULL;
}

/* The normalized text with spaCy's splits applied: into out when a word
 * splits, else NULL (the text is already its own word text). */
static const char *apply_splits(DdBuf *out, size_t *on, const char *t, size_t n)
{
    pthread_once(&split_once, split_table_build);
    size_t o = 0, pos = 0;
    int changed = 0;
    while (pos < n) {
        const char *sp = memchr(t + pos, ' ', n - pos);
        size_t end = sp ? (size_t)(sp - t) : n;
        const char *split = split_lookup(t + pos, end - pos);
        if (split && !changed) {   /* first split: copy what came before */
            changed = 1;
            ddbuf_reserve(out, n + n / 2 + 16);
            memcpy(out->p, t, pos);
            o = pos;
        }
        if (changed) {
            const char *src = split ? split : t + pos;
            size_t len = split ? strlen(split) : end - pos;
            ddbuf_reserve(out, o + len + 2);
            memcpy(out->p + o, src, len);
            o += len;
            if (end < n) out->p[o++] = ' ';
        }
        pos = end + 1;
    }
    if (!changed) return NULL;
    out->len = o;
    *on = o;
    return out->p;
}

/* Whether normalized text is not its own word text: a word is empty (two
 * spaces: only a lone accent between them leaves that) or is split by
 * spaCy. Most texts are their own: one pass, a byte at a time. */
static int words_differ(const char *t, size_t n)
{
    pthread_once(&split_once, split_table_build);
    Spaces sp;
    spaces_init(&sp, t, n);
    for (size_t start = 0; start < n;) {
        size_t end = spaces_next(&sp);
        size_t wl = end - start;
        if (wl == 0 ? end < n : split_candidate(t + start, wl) && split_lookup(t + start, wl)) return 1;
        start = end + 1;
    }
    return 0;
}

const char *dd_word_text(DdBuf *out, size_t *n, const char *text, size_t len, DdNorm norm)
{
    if (norm == DD_NORM_DATATROVE && !words_differ(text, len)) {
        *n = len;
        return text;
    }
    if (norm == DD_NORM_DATATROVE) {
        if (len > 1 && memmem(text, len, "  ", 2)) {
            ddbuf_reserve(out, len + 1);
            out->len = collapse(out->p, text, len, 1);
            DdBuf tmp = {0};
            const char *s = apply_splits(&tmp, n, out->p, out->len);
            if (s) {
                ddbuf_free(out);
                *out = tmp;
                return out->p;
            }
            *n = out->len;
            return out->p;
        }
        const char *s = apply_splits(out, n, text, len);
        if (s) return s;
        *n = len;
        return text;
    }
    int clean = len == 0 || (!ascii_ws((uint8_t)text[0]) && !ascii_ws((uint8_t)text[len - 1]));
    for (size_t i = 0; clean && i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        if (ascii_ws(c) && (c != ' ' || text[i + 1] == ' ')) clean = 0;
    }
    if (clean) {
        *n = len;
        return text;
    }
    ddbuf_reserve(out, len + 1);
    out->len = collapse(out->p, text, len, 0);
    *n = out->len;
    return out->p;
}

size_t dd_shingles(DdBuf *out, const char *w, size_t len, int n)
{
    if (n < 1 || n > 64) BUG("shingle size %d out of range", n);
    /* The end of each word (a space, or the end of the text): the words are
     * the pieces between spaces, but for an empty last one. A shingle of n
     * words runs from the start of the first to the end of the last. */
    size_t ends[65];   /* a ring of the last n ends and the end before them */
    size_t ring = (size_t)n + 1, at = 0, count = 0, words = 0;
    ddbuf_reserve(out, (len / 2 + 1) * sizeof(uint64_t));   /* a shingle a word at most, a word 2 bytes */
    uint64_t *h = (uint64_t *)(void *)out->p;
    Spaces sp;
    spaces_init(&sp, w, len);
    for (size_t start = 0; start < len;) {
        size_t end = spaces_next(&sp), next = at + 1 == ring ? 0 : at + 1;
        ends[at] = end;
        if (++words >= (size_t)n) {   /* ends[next]: the end n words back */
            size_t s0 = words > (size_t)n ? ends[next] + 1 : 0;
            h[count++] = XXH64(w + s0, end - s0, 0);
        }
        at = next;
        start = end + 1;
    }
    out->len = count * sizeof(uint64_t);
    return count;
}
