/* Pre-tokenizers written out by hand from tiktoken's regular expressions.
 * Each alternative of the regex becomes a test on character classes; where
 * the regex backtracks (greedy \s+ before a lookahead, U* before W+ in
 * o200k), the code computes directly the position backtracking settles on.
 * The first alternative that matches wins, as in a backtracking engine. */
#include "text/pretok.h"

#include <pthread.h>
#include <string.h>
#include <utf8proc.h>

static const char *const names[PRETOK_COUNT] = {"gpt2", "cl100k", "o200k"};

static const char *const regexes[PRETOK_COUNT] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+"
    "|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

int pretok_by_name(const char *name)
{
    if (!strcmp(name, "r50k")) return PRETOK_GPT2;
    for (int p = 0; p < PRETOK_COUNT; p++)
        if (!strcmp(name, names[p])) return p;
    return -1;
}

const char *pretok_name(int pattern) { return names[pattern]; }
const char *pretok_regex(int pattern) { return regexes[pattern]; }

/* ---- character classes ------------------------------------------------- */

/* Unicode White_Space, which is what \s means in tiktoken's regex engine. */
static int is_white_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static unsigned class_of(int32_t c)
{
    unsigned k = is_white_space(c) ? CC_S : 0;
    if (c == '\r' || c == '\n') k |= CC_NL;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: return k | CC_L | CC_U | CC_LU;
    case UTF8PROC_CATEGORY_LT: return k | CC_L | CC_U;
    case UTF8PROC_CATEGORY_LL: return k | CC_L | CC_W | CC_LL;
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return k | CC_L | CC_U | CC_W;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: return k | CC_U | CC_W;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return k | CC_N;
    default: return k;
    }
}

/* Classes of the Basic Multilingual Plane, built once: most text never
 * leaves it, and a table beats utf8proc's two-level lookup. */
static uint8_t bmp_class[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void bmp_init(void)
{
    for (int32_t c = 0; c < 0x10000; c++) bmp_class[c] = (uint8_t)class_of(c);
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF);
 * an invalid byte is a character of its own with no class. */
static int char_at(const uint8_t *s, size_t len, size_t pos, unsigned *cls)
{
    uint8_t b = s[pos];
    if (b < 0x80) { *cls = bmp_class[b]; return 1; }
    int32_t c;
    int n;
    if (b >= 0xC2 && b <= 0xDF) { c = b & 0x1F; n = 2; }
    else if (b >= 0xE0 && b <= 0xEF) { c = b & 0x0F; n = 3; }
    else if (b >= 0xF0 && b <= 0xF4) { c = b & 0x07; n = 4; }
    else { *cls = 0; return 1; }
    if (pos + n > len) { *cls = 0; return 1; }
    for (int k = 1; k < n; k++) {
        uint8_t t = s[pos + k];
        if ((t & 0xC0) != 0x80) { *cls = 0; return 1; }
        c = (c << 6) | (t & 0x3F);
    }
    if ((n == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) || (n == 4 && (c < 0x10000 || c > 0x10FFFF))) {
        *cls = 0;
        return 1;
    }
    *cls = c < 0x10000 ? bmp_class[c] : class_of(c);
    return n;
}

/* ---- matcher helpers ---------------------------------------------------- */

#define OTHER(k) (!((k) & (CC_L | CC_N | CC_S)))

/* End of the run of characters having any class bit in `want` (or, with
 * want == 0, of "other" characters: not letter, number or space). */
static size_t run_end(const uint8_t *s, size_t len, size_t p, unsigned want)
{
    while (p < len) {
        unsigned k;
        int n = char_at(s, len, p, &k);
        if (want ? !(k & want) : !OTHER(k)) break;
        p += n;
    }
    return p;
}

static size_t digits_upto3(const uint8_t *s, size_t len, size_t p)
{
    for (int i = 0; i < 3 && p < len; i++) {
        unsigned k;
        int n = char_at(s, len, p, &k);
        if (!(k & CC_N)) break;
        p += n;
    }
    return p;
}

static int lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Length of a contraction after the apostrophe at s[p], 0 if none:
 * 's 't 'm 'd 're 've 'll; with fold, any case, and s also as U+017F
 * (long s), its Unicode case-fold partner. */
static size_t contraction(const uint8_t *s, size_t len, size_t p, int fold)
{
    if (p + 1 >= len || s[p] != '\'') return 0;
    uint8_t a = fold ? lower(s[p + 1]) : s[p + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (fold && p + 2 < len && s[p + 1] == 0xC5 && s[p + 2] == 0xBF) return 3;   /* ſ */
    if (p + 2 < len) {
        uint8_t b = fold ? lower(s[p + 2]) : s[p + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

/* A whitespace run [i, end) with the places backtracking can stop at. */
typedef struct {
    size_t end;       /* end of the maximal run */
    size_t last;      /* start of its last character */
    size_t after_nl;  /* just after its last \r or \n; 0 when none */
} SpaceRun;

static SpaceRun space_run(const uint8_t *s, size_t len, size_t i)
{
    SpaceRun r = {i, i, 0};
    while (r.end < len) {
        unsigned k;
        int n = char_at(s, len, r.end, &k);
        if (!(k & CC_S)) break;
        r.last = r.end;
        r.end += n;
        if (k & CC_NL) r.after_nl = r.end;
    }
    return r;
}

/* ---- gpt2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const uint8_t *s, size_t len, size_t i)
{
    size_t c = contraction(s, len, i, 0);
    if (c) return i + c;
    unsigned k0, k1 = 0;
    int n0 = char_at(s, len, i, &k0);
    int space = s[i] == ' ' && i + 1 < len;
    if (space) char_at(s, len, i + 1, &k1);
    static const unsigned wants[2] = {CC_L, CC_N};
    for (int w = 0; w < 2; w++) {
        if (space && (k1 & wants[w])) return run_end(s, len, i + 1, wants[w]);
        if (k0 & wants[w]) return run_end(s, len, i, wants[w]);
    }
    if (space && OTHER(k1)) return run_end(s, len, i + 1, 0);
    if (OTHER(k0)) return run_end(s, len, i, 0);
    SpaceRun r = space_run(s, len, i);
    if (r.end == len) return r.end;
    if (r.last > i) return r.last;
    return i + n0;
}

/* ---- cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+
 *      | ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s */
static size_t newlines(const uint8_t *s, size_t len, size_t p, const char *set)
{
    while (p < len && s[p] && strchr(set, s[p])) p++;
    return p;
}

static size_t next_cl100k(const uint8_t *s, size_t len, size_t i)
{
    size_t c = contraction(s, len, i, 1);
    if (c) return i + c;
    unsigned k0, k1 = 0;
    int n0 = char_at(s, len, i, &k0);
    if (k0 & CC_L) return run_end(s, len, i, CC_L);
    if (i + n0 < len) char_at(s, len, i + n0, &k1);
    if (!(k0 & (CC_NL | CC_L | CC_N)) && (k1 & CC_L)) return run_end(s, len, i + n0, CC_L);
    if (k0 & CC_N) return digits_upto3(s, len, i);
    if (s[i] == ' ' && i + 1 < len && OTHER(k1)) return newlines(s, len, run_end(s, len, i + 1, 0), "\r\n");
    if (OTHER(k0)) return newlines(s, len, run_end(s, len, i, 0), "\r\n");
    SpaceRun r = space_run(s, len, i);
    if (r.end == len) return r.end;
    if (r.after_nl) return r.after_nl;
    if (r.last > i) return r.last;
    return i + n0;
}

/* ---- o200k ------------------------------------------------------------- */

/* [U]*[W]+(?i:contraction)? from k, U = Lu Lt Lm Lo M, W = Ll Lm Lo M;
 * 0 when it does not match. U* is greedy, so W+ starts at the last place
 * a W character can be found: the end of the U run, else the last W
 * character inside it. */
static size_t o200k_lower_word(const uint8_t *s, size_t len, size_t k)
{
    size_t u = k, q = (size_t)-1;
    unsigned cls = 0;
    while (u < len) {
        int n = char_at(s, len, u, &cls);
        if (!(cls & CC_U)) break;
        if (cls & CC_W) q = u;
        u += n;
    }
    if (u < len && (cls & CC_W)) q = u;
    if (q == (size_t)-1) return 0;
    size_t e = run_end(s, len, q, CC_W);
    return e + contraction(s, len, e, 1);
}

/* [U]+[W]*(?i:contraction)? from k; 0 when it does not match. */
static size_t o200k_upper_word(const uint8_t *s, size_t len, size_t k)
{
    size_t u = run_end(s, len, k, CC_U);
    if (u == k) return 0;
    size_t e = run_end(s, len, u, CC_W);
    return e + contraction(s, len, e, 1);
}

static size_t next_o200k(const uint8_t *s, size_t len, size_t i)
{
    unsigned k0, k1 = 0;
    int n0 = char_at(s, len, i, &k0);
    int prefix = !(k0 & (CC_NL | CC_L | CC_N)) && i + n0 < len;
    size_t e;
    if (prefix && (e = o200k_lower_word(s, len, i + n0))) return e;
    if ((e = o200k_lower_word(s, len, i))) return e;
    if (prefix && (e = o200k_upper_word(s, len, i + n0))) return e;
    if ((e = o200k_upper_word(s, len, i))) return e;
    if (k0 & CC_N) return digits_upto3(s, len, i);
    if (i + 1 < len) char_at(s, len, i + 1, &k1);
    if (s[i] == ' ' && i + 1 < len && OTHER(k1)) return newlines(s, len, run_end(s, len, i + 1, 0), "\r\n/");
    if (OTHER(k0)) return newlines(s, len, run_end(s, len, i, 0), "\r\n/");
    SpaceRun r = space_run(s, len, i);
    if (r.after_nl) return r.after_nl;
    if (r.end == len) return r.end;
    if (r.last > i) return r.last;
    return r.end;
}

int pretok_char(const uint8_t *s, size_t len, size_t pos, unsigned *cls)
{
    pthread_once(&bmp_once, bmp_init);
    return char_at(s, len, pos, cls);
}

size_t pretok_next(int pattern, const uint8_t *s, size_t len, size_t pos)
{
    pthread_once(&bmp_once, bmp_init);
    switch (pattern) {
    case PRETOK_GPT2: return next_gpt2(s, len, pos);
    case PRETOK_CL100K: return next_cl100k(s, len, pos);
    default: return next_o200k(s, len, pos);
    }
}
