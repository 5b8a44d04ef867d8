/* The chat task; see chat_task.h. */
#include "eval/chat_task.h"
#include "base/base.h"
#include "base/json.h"
#include "text/chat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- the metrics ------------------------------------------------------------ */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* s[0 .. n) without white space at either end: returns where it begins, *len its length. */
static const char *trim(const char *s, size_t n, size_t *len)
{
    while (n && is_space(s[n - 1])) n--;
    while (n && is_space(*s)) { s++; n--; }
    *len = n;
    return s;
}

int chat_exact(const char *reply, const char *reference)
{
    size_t a, b;
    const char *x = trim(reply, strlen(reply), &a), *y = trim(reference, strlen(reference), &b);
    return a == b && !memcmp(x, y, a);
}

/* s lowercased (Unicode's simple case mapping; stray bytes kept). */
static char *lower(const char *s)
{
    size_t left = strlen(s), n = 0;
    char *out = xmalloc(4 * left + 1);
    const uint8_t *p = (const uint8_t *)s;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, (utf8proc_ssize_t)left, &cp);
        if (k <= 0) { out[n++] = (char)*p++; left--; continue; }
        n += (size_t)utf8proc_encode_char(utf8proc_tolower(cp), (utf8proc_uint8_t *)out + n);
        p += k;
        left -= (size_t)k;
    }
    out[n] = 0;
    return out;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The words of s (cut in place at white space), sorted; returns their number. */
static size_t words(char *s, char ***w)
{
    size_t n = 0, cap = 0;
    *w = NULL;
    for (char *p = s; *p;) {
        while (is_space(*p)) *p++ = 0;
        if (!*p) break;
        if (n == cap) *w = xrealloc(*w, (cap = 2 * cap + 16) * sizeof **w);
        (*w)[n++] = p;
        while (*p && !is_space(*p)) p++;
    }
    if (n > 1) qsort(*w, n, sizeof **w, cmp_str);
    return n;
}

double chat_f1(const char *reply, const char *reference)
{
    char *a = lower(reply), *b = lower(reference), **wa, **wb;
    size_t na = words(a, &wa), nb = words(b, &wb), common = 0;
    for (size_t i = 0, j = 0; i < na && j < nb;) {   /* the multisets' intersection, as Counter & Counter */
        int c = strcmp(wa[i], wb[j]);
        if (c == 0) { common++; i++; j++; }
        else if (c < 0) i++;
        else j++;
    }
    double f1 = na == 0 || nb == 0 ? (double)(na == nb) : common == 0 ? 0 : 2.0 * (double)common / (double)(na + nb);
    free(wa);
    free(wb);
    free(a);
    free(b);
    return f1;
}

/* ---- reading ---------------------------------------------------------------- */

/* The last assistant message of c: its learned tokens [*from, *to) (its
 * content and <|im_end|>) and the <|im_start|> that opens it, *open. A
 * message's tokens are its own (chat_encode encodes each alone), so
 * c[0 .. open) is chat_encode of the messages before it. */
static void last_reply(const Conversation *c, uint32_t im_start, size_t *open, size_t *from, size_t *to)
{
    size_t b = c->len;
    while (b && !c->learn[b - 1]) b--;
    size_t a = b;
    while (a && c->learn[a - 1]) a--;
    size_t o = a;
    while (o && c->ids[o - 1] != im_start) o--;
    if (b == 0 || o == 0) BUG("a conversation without a learned assistant message");
    *open = o - 1;
    *from = a;
    *to = b;
}

static char *decode_trimmed(const Tokenizer *tok, const uint32_t *ids, size_t n)
{
    TokBytes bytes = {0};
    tokenizer_decode(tok, &bytes, ids, n);
    size_t len;
    const char *s = trim(bytes.len ? (const char *)bytes.bytes : "", bytes.len, &len);
    char *out = xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = 0;
    tokbytes_free(&bytes);
    return out;
}

/* Item i's reference and prompt: the conversation up to its last
 * assistant message, then the generation prompt. */
static void item_make(ChatTask *t, size_t i, const Tokenizer *tok)
{
    const Conversation *c = &t->set.conv[i];
    ChatItem *it = &t->items[i];
    uint32_t im_end = (uint32_t)tokenizer_special(tok, CHAT_END);
    size_t open, from, to;
    last_reply(c, (uint32_t)tokenizer_special(tok, CHAT_START), &open, &from, &to);
    it->reference = decode_trimmed(tok, c->ids + from, to - from - (c->ids[to - 1] == im_end));
    it->prompt.ids = xmalloc(open * sizeof(uint32_t) + 1);
    memcpy(it->prompt.ids, c->ids, open * sizeof(uint32_t));
    it->prompt.len = it->prompt.cap = open;
    chat_encode(tok, NULL, 0, 1, 0, &it->prompt, NULL, NULL);
}

void chat_task_read(ChatTask *t, const char *path, const Tokenizer *tok, int skip_bad)
{
    memset(t, 0, sizeof *t);
    chatset_read(&t->set, path, tok, 0, skip_bad, SIZE_MAX, 1);   /* whole: the window is the scorer's to apply */
    if (t->set.n == 0)
        die("%s: no conversation with an assistant turn (%llu without one, %llu bad lines skipped)", path,
            (unsigned long long)t->set.no_assistant, (unsigned long long)t->set.bad);
    t->marked = xcalloc(t->set.n, sizeof *t->marked);
    t->items = xcalloc(t->set.n, sizeof *t->items);
    for (size_t i = 0; i < t->set.n; i++) {
        const Conversation *c = &t->set.conv[i];
        t->marked[i] = (Marked){.ids = c->ids, .learn = c->learn, .len = c->len};
        item_make(t, i, tok);
    }
}

void chat_task_free(ChatTask *t)
{
    for (size_t i = 0; i < t->set.n; i++) {
        tokids_free(&t->items[i].prompt);
        free(t->items[i].reference);
        free(t->items[i].reply);
    }
    free(t->items);
    free(t->marked);
    chatset_free(&t->set);
    memset(t, 0, sizeof *t);
}

/* ---- replies ------------------------------------------------------------------- */

int chat_reply_ends(const Tokenizer *tok, uint32_t ends[2])
{
    int n = 0;
    ends[n++] = (uint32_t)tokenizer_special(tok, CHAT_END);
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    if (eot >= 0) ends[n++] = (uint32_t)eot;
    return n;
}

int chat_task_rows(const ChatTask *t, int max_tokens)
{
    size_t rows = 1;
    for (size_t i = 0; i < t->set.n; i++) {
        size_t conv = t->set.conv[i].len - 1, gen = t->items[i].prompt.len + (size_t)max_tokens - 1;
        rows = conv > rows ? conv : rows;
        rows = gen > rows ? gen : rows;
    }
    return rows < (size_t)INT32_MAX ? (int)rows : INT32_MAX;
}

void chat_task_reply(ChatTask *t, size_t i, const Tokenizer *tok, const TokIds *reply, int ended, int cut)
{
    ChatItem *it = &t->items[i];
    it->ended = ended;
    it->truncated = t->marked[i].truncated || cut;
    it->reply_tokens = reply->len;
    free(it->reply);
    it->reply = decode_trimmed(tok, reply->ids, reply->len);
    it->exact = chat_exact(it->reply, it->reference);
    it->f1 = chat_f1(it->reply, it->reference);
}

/* ---- results -------------------------------------------------------------------- */

ChatResult chat_task_result(const ChatTask *t)
{
    ChatResult r = {.n = t->set.n};
    double nll = 0, *x = xmalloc(t->set.n * sizeof(double)), *y = xmalloc(t->set.n * sizeof(double));
    for (size_t i = 0; i < t->set.n; i++) {
        nll += t->marked[i].nll;
        r.tokens += t->marked[i].tokens;
        x[i] = t->items[i].exact;
        y[i] = t->items[i].f1;
        r.ended += (size_t)t->items[i].ended;
        r.truncated += (size_t)t->items[i].truncated;
    }
    r.loss = r.tokens ? nll / (double)r.tokens : NAN;
    mean_stderr(x, t->set.n, &r.exact, &r.exact_stderr);
    mean_stderr(y, t->set.n, &r.f1, &r.f1_stderr);
    free(x);
    free(y);
    return r;
}

void chat_task_write_examples(const ChatTask *t, FILE *f, const char *name)
{
    for (size_t i = 0; i < t->set.n; i++) {
        const ChatItem *it = &t->items[i];
        const Marked *m = &t->marked[i];
        cJSON *j = json_obj();
        json_add_u64(j, "index", i);
        if (m->tokens) json_add_num(j, "loss", m->nll / (double)m->tokens);
        else json_add(j, "loss", cJSON_CreateNull());
        json_add_u64(j, "tokens", m->tokens);
        json_add_u64(j, "prompt_tokens", it->prompt.len);
        json_add_str(j, "reply", it->reply);
        json_add_str(j, "reference", it->reference);
        json_add_u64(j, "reply_tokens", it->reply_tokens);
        json_add_bool(j, "ended", it->ended);
        json_add_bool(j, "exact", it->exact);
        json_add_num(j, "f1", it->f1);
        json_add_bool(j, "truncated", it->truncated);
        char *s = json_print(j, 0);
        fprintf(f, "%s\n", s);
        if (ferror(f)) die("%s: write error", name);
        free(s);
        cJSON_Delete(j);
    }
}
