/* Chat data for supervised fine-tuning; see chat_data.h. */
#include "train/chat_data.h"
#include "base/base.h"
#include "base/json.h"
#include "text/chat.h"
#include "train/loader.h"

#include <stdlib.h>
#include <string.h>

/* The messages of one line into m[] (at most cap); returns their number, or
 * 0 when the line was bad (and skipped). Contents point into o. */
static size_t read_messages(LineSource *r, const cJSON *o, ChatMessage **m, size_t *cap)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt"), *completion = cJSON_GetObjectItemCaseSensitive(o, "completion");
    if (cJSON_IsArray(msgs)) {   /* read as sigma-generate --chat reads them */
        char why[160];
        size_t n = chat_messages_from_json(msgs, m, cap, why, sizeof why);
        return n ? n : (size_t)line_bad(r, "%s", why);
    }
    if (cJSON_IsString(prompt) && cJSON_IsString(completion)) {
        if (*cap < 2) *m = xrealloc(*m, (*cap = 8) * sizeof **m);
        (*m)[0] = (ChatMessage){ROLE_USER, prompt->valuestring};
        (*m)[1] = (ChatMessage){ROLE_ASSISTANT, completion->valuestring};
        return 2;
    }
    return line_bad(r, "neither {\"messages\": [...]} nor {\"prompt\", \"completion\"} strings");
}

void chatset_read(ChatSet *s, const char *path, const Tokenizer *tok, int train_all, int skip_bad, size_t max_len, int cut_long)
{
    memset(s, 0, sizeof *s);
    chat_check_tokenizer(tok, "the tokenizer");
    size_t len, mcap = 0, conv_cap = 0;
    char *text = read_file(path, (size_t)1 << 34, &len);   /* 16 GiB: read whole, so it must fit in memory anyway */
    LineSource r = {.path = path, .skip_bad = skip_bad};
    ChatMessage *m = NULL;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p)), *end = nl ? nl : text + len;
        r.line++;
        size_t n = (size_t)(end - p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        char *line = p;
        p = end + 1;
        if (n == 0) continue;
        size_t err = 0;
        cJSON *o = json_has_nul_escape(line, n) ? NULL : json_parse(line, n, &err);
        size_t nm = 0;
        if (!o) line_bad(&r, "not JSON (byte %zu)", err + 1);
        else if (!cJSON_IsObject(o)) line_bad(&r, "not a JSON object");
        else nm = read_messages(&r, o, &m, &mcap);
        int has_assistant = 0;
        for (size_t i = 0; i < nm; i++) has_assistant |= m[i].role == ROLE_ASSISTANT;
        if (nm && !has_assistant) s->no_assistant++;
        if (nm && has_assistant) {
            TokIds ids = {0};
            uint8_t *learn = NULL;
            size_t lcap = 0;
            chat_encode(tok, m, nm, 0, train_all, &ids, &learn, &lcap);
            if (ids.len > max_len) {
                if (cut_long) { s->cut++; ids.len = max_len; }
                else { s->dropped++; tokids_free(&ids); free(learn); ids.len = 0; }
            }
            if (ids.len) {
                if (s->n == conv_cap) s->conv = xrealloc(s->conv, (conv_cap = 2 * conv_cap + 64) * sizeof *s->conv);
                s->conv[s->n++] = (Conversation){.ids = ids.ids, .learn = learn, .len = ids.len};
            }
        }
        cJSON_Delete(o);
    }
    s->bad = r.skipped;
    free(m);
    free(text);
}

void chatset_free(ChatSet *s)
{
    for (size_t i = 0; i < s->n; i++) { free(s->conv[i].ids); free(s->conv[i].learn); }
    free(s->conv);
    memset(s, 0, sizeof *s);
}

/* The rest of row `row` from column `at`: padding, a document of its own. */
static void pad_row(ChatRows *r, size_t row, int at, uint32_t pad)
{
    for (int t = at, p = 0; t < r->T; t++, p++) {
        size_t i = row * (size_t)r->T + (size_t)t;
        r->inputs[i] = pad;
        r->targets[i] = pad;
        r->mask[i] = 0;
        r->pos[i] = p;
    }
}

/* A conversation's tokens in a row: at most T (the last one's successor is none). */
static int row_len(const Conversation *c, int T) { return (int)(c->len < (size_t)T ? c->len : (size_t)T); }

/* Best-fit decreasing, TRL's packer: the conversations from the longest,
 * each into the row whose free room fits it most tightly, a new row when
 * none does; equal lengths in the order given. Fuller rows than taking the
 * conversations as they come, and the same rows every time. Writes each
 * one's row and column (row[k], col[k] for order[k]) and returns the rows. */
static size_t pack_best_fit(size_t *row, int *col, const ChatSet *s, const size_t *order, size_t n, int T)
{
    /* the order by length, longest first: a stable counting sort */
    size_t *count = xcalloc((size_t)T + 2, sizeof *count), *by_len = xmalloc((n ? n : 1) * sizeof *by_len);
    for (size_t k = 0; k < n; k++) count[T - row_len(&s->conv[order[k]], T)]++;
    for (int c = 1; c <= T + 1; c++) count[c] += count[c - 1];
    for (size_t k = n; k-- > 0;) by_len[--count[T - row_len(&s->conv[order[k]], T)]] = k;
    /* rows by free room: a list for each room 0..T, and a bitmap of the rooms that have rows */
    size_t none = (size_t)-1, n_rows = 0, cap = 64;
    size_t *head = xmalloc(((size_t)T + 1) * sizeof *head), *next = xmalloc(cap * sizeof *next);
    for (int c = 0; c <= T; c++) head[c] = none;
    uint64_t *have = xcalloc((size_t)T / 64 + 1, sizeof *have);
    for (size_t i = 0; i < n; i++) {
        size_t k = by_len[i];
        int len = row_len(&s->conv[order[k]], T), room = -1;
        for (int w = len / 64; w <= T / 64 && room < 0; w++) {   /* the tightest room >= len */
            uint64_t bits = have[w] & (w == len / 64 ? ~0ull << (len % 64) : ~0ull);
            if (bits) room = w * 64 + __builtin_ctzll(bits);
        }
        size_t r;
        if (room >= 0) {
            r = head[room];
            head[room] = next[r];
            if (head[room] == none) have[room / 64] &= ~(1ull << (room % 64));
        } else {
            if (n_rows == cap) next = xrealloc(next, (cap *= 2) * sizeof *next);
            r = n_rows++;
            room = T;
        }
        row[k] = r;
        col[k] = T - room;
        int left = room - len;
        next[r] = head[left];
        head[left] = r;
        have[left / 64] |= 1ull << (left % 64);
    }
    free(count);
    free(by_len);
    free(head);
    free(next);
    free(have);
    return n_rows;
}

void chat_rows(ChatRows *r, const ChatSet *s, const size_t *order, size_t n, int T, int pack, uint32_t pad)
{
    memset(r, 0, sizeof *r);
    r->T = T;
    size_t *row = xmalloc((n ? n : 1) * sizeof *row);
    int *col = xmalloc((n ? n : 1) * sizeof *col);
    if (pack) {
        r->n_rows = pack_best_fit(row, col, s, order, n, T);
    } else {
        for (size_t k = 0; k < n; k++) { row[k] = k; col[k] = 0; }
        r->n_rows = n;
    }
    size_t cap = r->n_rows, cells = cap * (size_t)T;
    r->inputs = xmalloc((cells ? cells : 1) * sizeof *r->inputs);
    r->targets = xmalloc((cells ? cells : 1) * sizeof *r->targets);
    r->mask = xmalloc((cells ? cells : 1) * sizeof *r->mask);
    r->pos = xmalloc((cells ? cells : 1) * sizeof *r->pos);
    int *used = xcalloc(cap ? cap : 1, sizeof *used);
    for (size_t k = 0; k < n; k++) {
        const Conversation *c = &s->conv[order[k]];
        int len = row_len(c, T);
        size_t base = row[k] * (size_t)T + (size_t)col[k];
        for (int t = 0; t < len; t++) {
            int has_next = (size_t)t + 1 < c->len;   /* a conversation cut to T + 1 tokens fills a row and predicts its last */
            r->inputs[base + t] = c->ids[t];
            r->targets[base + t] = has_next ? c->ids[t + 1] : pad;
            r->mask[base + t] = has_next && c->learn[t + 1];
            r->pos[base + t] = t;
            r->learned += (uint64_t)r->mask[base + t];
        }
        r->tokens += (uint64_t)len;
        if (col[k] + len > used[row[k]]) used[row[k]] = col[k] + len;
    }
    for (size_t i = 0; i < r->n_rows; i++) pad_row(r, i, used[i], pad);
    free(used);
    free(row);
    free(col);
}

/* Moves the conversations of s whose index is marked into out. */
static void chatset_take(ChatSet *out, ChatSet *s, const uint8_t *marked)
{
    memset(out, 0, sizeof *out);
    out->conv = xmalloc((s->n ? s->n : 1) * sizeof *out->conv);
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (marked[i]) out->conv[out->n++] = s->conv[i];
        else s->conv[kept++] = s->conv[i];
    }
    s->n = kept;
}

static void lay_rows(ChatRows *r, const ChatSet *s, const ChatLayout *lay, uint32_t pad, int shuffle, uint64_t seed)
{
    uint64_t *order = xmalloc((s->n ? s->n : 1) * sizeof *order);
    size_t *idx = xmalloc((s->n ? s->n : 1) * sizeof *idx);
    for (size_t i = 0; i < s->n; i++) order[i] = i;
    if (shuffle) shuffle_u64(order, s->n, seed);
    for (size_t i = 0; i < s->n; i++) idx[i] = (size_t)order[i];
    chat_rows(r, s, idx, s->n, lay->T, lay->pack, pad);
    free(order);
    free(idx);
}

void chat_data_open(ChatData *d, const char *path, const char *val_path, double val_fraction, const Tokenizer *tok,
                    const ChatLayout *lay)
{
    memset(d, 0, sizeof *d);
    size_t max_len = (size_t)lay->T + 1;
    chatset_read(&d->train, path, tok, lay->train_all, lay->skip_bad, max_len, lay->cut_long);
    if (d->train.n == 0)
        die("%s: no conversation to learn from (%llu without an assistant turn, %llu bad lines skipped, %llu longer than "
            "%zu tokens dropped)", path, (unsigned long long)d->train.no_assistant, (unsigned long long)d->train.bad,
            (unsigned long long)d->train.dropped, max_len);
    if (val_path) {
        chatset_read(&d->val, val_path, tok, lay->train_all, lay->skip_bad, max_len, lay->cut_long);
    } else if (val_fraction > 0) {
        size_t n = d->train.n, n_val = (size_t)(val_fraction * (double)n + 0.5);
        if (n_val == 0 && n >= 2) n_val = 1;
        if (n_val >= n) die("%s: --val-fraction %g leaves no conversation of %zu to train on", path, val_fraction, n);
        uint64_t *order = xmalloc(n * sizeof *order);
        uint8_t *marked = xcalloc(n, 1);
        for (size_t i = 0; i < n; i++) order[i] = i;
        shuffle_u64(order, n, lay->seed ^ 0x76616c6964ull);   /* "valid": a stream of its own */
        for (size_t i = 0; i < n_val; i++) marked[order[i]] = 1;
        chatset_take(&d->val, &d->train, marked);
        free(order);
        free(marked);
    }
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    uint32_t pad = eot >= 0 ? (uint32_t)eot : 0;   /* any token: padding carries no loss and sees only itself */
    lay_rows(&d->train_rows, &d->train, lay, pad, 1, lay->seed ^ 0x7061636bull);   /* "pack" */
    if (d->val.n) lay_rows(&d->val_rows, &d->val, lay, pad, 0, 0);
}

void chat_data_free(ChatData *d)
{
    chatset_free(&d->train);
    chatset_free(&d->val);
    chat_rows_free(&d->train_rows);
    chat_rows_free(&d->val_rows);
}

void chat_rows_free(ChatRows *r)
{
    free(r->inputs);
    free(r->targets);
    free(r->mask);
    free(r->pos);
    memset(r, 0, sizeof *r);
}
