/* Benchmarks as lm-evaluation-harness poses and scores them; see tasks.h. */
#include "eval/tasks.h"
#include "base/base.h"
#include "base/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *const task_names[N_TASKS] = {"choice", "piqa", "lambada", "hellaswag", "arc", "winogrande"};

int task_parse(const char *name, TaskKind *kind)
{
    for (int i = 0; i < N_TASKS; i++)
        if (!strcmp(name, task_names[i])) { *kind = (TaskKind)i; return 0; }
    return -1;
}

const char *task_name(TaskKind kind) { return task_names[kind]; }

/* ---- text ----------------------------------------------------------------- */

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
} Str;

static void str_add(Str *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) b->s = xrealloc(b->s, b->cap = 2 * (b->len + n + 1) + 32);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void str_cat(Str *b, const char *s) { str_add(b, s, strlen(s)); }
static char *str_take(Str *b) { return b->s ? b->s : xstrdup(""); }
static char *copy_n(const char *s, size_t n)
{
    Str b = {0};
    str_add(&b, s, n);
    return str_take(&b);
}

/* Characters as Python counts them: code points (UTF-8 lead bytes). */
static size_t n_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Python's str.capitalize(): the first character in title case, the rest
 * in lower case (simple case mappings). */
static char *capitalize(const char *s)
{
    Str out = {0};
    const uint8_t *p = (const uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(s);
    for (int first = 1; left > 0; first = 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
        if (n <= 0) { str_add(&out, (const char *)p, 1); p++; left--; continue; }   /* a stray byte, kept */
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t m = utf8proc_encode_char(first ? utf8proc_totitle(cp) : utf8proc_tolower(cp), enc);
        str_add(&out, (const char *)enc, (size_t)m);
        p += n;
        left -= n;
    }
    return str_take(&out);
}

/* HellaSwag's preprocessing, as the harness does it: strip, " [title]" to
 * ". ", every "[...]" on one line removed, then "  " to " " (one pass). */
static char *hellaswag_preprocess(const char *text)
{
    const char *ws = " \t\n\r\v\f";
    size_t a = strspn(text, ws), b = strlen(text);
    while (b > a && strchr(ws, text[b - 1])) b--;
    Str s1 = {0}, s2 = {0}, s3 = {0};
    for (size_t i = a; i < b;) {
        if (b - i >= 8 && !memcmp(text + i, " [title]", 8)) { str_cat(&s1, ". "); i += 8; }
        else { str_add(&s1, text + i, 1); i++; }
    }
    for (size_t i = 0; i < s1.len;) {
        size_t j = i + 1;
        if (s1.s[i] == '[') {
            while (j < s1.len && s1.s[j] != ']' && s1.s[j] != '\n') j++;
            if (j < s1.len && s1.s[j] == ']') { i = j + 1; continue; }
        }
        str_add(&s2, s1.s + i, 1);
        i++;
    }
    for (size_t i = 0; i < s2.len;) {
        if (i + 1 < s2.len && s2.s[i] == ' ' && s2.s[i + 1] == ' ') { str_cat(&s3, " "); i += 2; }
        else { str_add(&s3, s2.s + i, 1); i++; }
    }
    free(s1.s);
    free(s2.s);
    return str_take(&s3);
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
    Task *t;
    const Scorer *s;
    LineSource src;            /* a bad line dies naming it, or is counted (--skip-bad) */
    /* the item being built */
    char **contexts, **choices;   /* [n] (the continuation is " " + choice) */
    int n, cap;
} Reader;

static void item_add_choice(Reader *r, const char *context, const char *choice)
{
    if (r->n == r->cap) {
        r->cap = 2 * r->cap + 4;
        r->contexts = xrealloc(r->contexts, (size_t)r->cap * sizeof(char *));
        r->choices = xrealloc(r->choices, (size_t)r->cap * sizeof(char *));
    }
    r->contexts[r->n] = xstrdup(context);
    r->choices[r->n++] = xstrdup(choice);
}

static void item_drop(Reader *r)
{
    for (int i = 0; i < r->n; i++) { free(r->contexts[i]); free(r->choices[i]); }
    r->n = 0;
}

/* The item's requests: " " + choice given its context. */
static void item_commit(Reader *r, int label)
{
    Task *t = r->t;
    t->items = xrealloc(t->items, (t->n_items + 1) * sizeof(Item));
    t->requests = xrealloc(t->requests, (t->n_requests + (size_t)r->n) * sizeof(Request));
    Item *it = &t->items[t->n_items++];
    *it = (Item){.first = t->n_requests, .n_choices = r->n, .label = label, .line = r->src.line};
    it->chars = xmalloc((size_t)r->n * sizeof(size_t));
    for (int i = 0; i < r->n; i++) {
        char *cont = xasprintf(" %s", r->choices[i]);
        request_make(&t->requests[t->n_requests++], r->s, r->contexts[i], strlen(r->contexts[i]), cont, strlen(cont));
        it->chars[i] = n_chars(r->choices[i]);
        free(cont);
    }
    item_drop(r);
}

static const char *str_field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One item from the generic form; returns 0 when skipped. */
static int read_choice(Reader *r, const cJSON *o)
{
    const char *ctx = str_field(o, "context");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices"), *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (!ctx) return line_bad(&r->src, "no string \"context\"");
    if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) < 1) return line_bad(&r->src, "\"choices\" is not a non-empty array");
    int n = cJSON_GetArraySize(ch);
    if (!cJSON_IsNumber(lab) || lab->valuedouble != (int)lab->valuedouble || lab->valuedouble < 0 || lab->valuedouble >= n)
        return line_bad(&r->src, "\"label\" is not an index into the %d choices", n);
    for (const cJSON *c = ch->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !*c->valuestring) return line_bad(&r->src, "a choice is not a non-empty string");
        item_add_choice(r, ctx, c->valuestring);
    }
    item_commit(r, (int)lab->valuedouble);
    return 1;
}

static int read_piqa(Reader *r, const cJSON *o, int label)
{
    const char *goal = str_field(o, "goal"), *s1 = str_field(o, "sol1"), *s2 = str_field(o, "sol2");
    if (!goal || !s1 || !s2) return line_bad(&r->src, "a PIQA item needs strings \"goal\", \"sol1\" and \"sol2\"");
    char *ctx = xasprintf("Question: %s\nAnswer:", goal);
    item_add_choice(r, ctx, s1);
    item_add_choice(r, ctx, s2);
    free(ctx);
    item_commit(r, label);
    return 1;
}

static int read_lambada(Reader *r, const cJSON *o)
{
    const char *text = str_field(o, "text");
    const char *sp = text ? strrchr(text, ' ') : NULL;
    if (!text) return line_bad(&r->src, "no string \"text\"");
    if (!sp || !sp[1]) return line_bad(&r->src, "the passage has no last word after a space");
    char *ctx = copy_n(text, (size_t)(sp - text));
    item_add_choice(r, ctx, sp + 1);
    free(ctx);
    item_commit(r, 0);
    return 1;
}

static int read_hellaswag(Reader *r, const cJSON *o)
{
    const char *act = str_field(o, "activity_label"), *a = str_field(o, "ctx_a"), *b = str_field(o, "ctx_b");
    const cJSON *endings = cJSON_GetObjectItemCaseSensitive(o, "endings"), *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (!act || !a || !b) return line_bad(&r->src, "a HellaSwag item needs strings \"activity_label\", \"ctx_a\" and \"ctx_b\"");
    if (!cJSON_IsArray(endings) || cJSON_GetArraySize(endings) < 1) return line_bad(&r->src, "\"endings\" is not a non-empty array");
    int n = cJSON_GetArraySize(endings), label = -1;
    if (cJSON_IsNumber(lab)) label = (int)lab->valuedouble;
    else if (cJSON_IsString(lab) && *lab->valuestring) label = atoi(lab->valuestring);
    if (label < 0 || label >= n) return line_bad(&r->src, "\"label\" is not an index into the %d endings", n);
    char *cap = capitalize(b), *raw = xasprintf("%s: %s %s", act, a, cap), *ctx = hellaswag_preprocess(raw);
    for (const cJSON *e = endings->child; e; e = e->next) {
        if (!cJSON_IsString(e)) { free(cap); free(raw); free(ctx); return line_bad(&r->src, "an ending is not a string"); }
        char *end = hellaswag_preprocess(e->valuestring);
        item_add_choice(r, ctx, end);
        free(end);
    }
    free(cap);
    free(raw);
    free(ctx);
    item_commit(r, label);
    return 1;
}

static int read_arc(Reader *r, const cJSON *o)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "question"), *choices;
    const char *stem, *key = str_field(o, "answerKey");
    if (cJSON_IsObject(q)) {   /* AI2's release: choices inside the question */
        stem = str_field(q, "stem");
        choices = cJSON_GetObjectItemCaseSensitive(q, "choices");
    } else {                   /* Hugging Face's: {"question": str, "choices": {"text": [], "label": []}} */
        stem = cJSON_IsString(q) ? q->valuestring : NULL;
        choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
    }
    if (!stem || !key) return line_bad(&r->src, "an ARC item needs a question stem and an \"answerKey\"");
    char *ctx = xasprintf("Question: %s\nAnswer:", stem);
    int label = -1, i = 0;
    if (cJSON_IsArray(choices)) {
        for (const cJSON *c = choices->child; c; c = c->next, i++) {
            const char *text = str_field(c, "text"), *l = str_field(c, "label");
            if (!text || !l) { free(ctx); return line_bad(&r->src, "a choice needs strings \"text\" and \"label\""); }
            if (!strcmp(l, key)) label = i;
            item_add_choice(r, ctx, text);
        }
    } else if (cJSON_IsObject(choices)) {
        const cJSON *texts = cJSON_GetObjectItemCaseSensitive(choices, "text"), *labels = cJSON_GetObjectItemCaseSensitive(choices, "label");
        if (!cJSON_IsArray(texts) || !cJSON_IsArray(labels) || cJSON_GetArraySize(texts) != cJSON_GetArraySize(labels)) {
            free(ctx);
            return line_bad(&r->src, "\"choices\" needs \"text\" and \"label\" arrays of one length");
        }
        for (const cJSON *t = texts->child, *l = labels->child; t && l; t = t->next, l = l->next, i++) {
            if (!cJSON_IsString(t) || !cJSON_IsString(l)) { free(ctx); return line_bad(&r->src, "a choice's text or label is not a string"); }
            if (!strcmp(l->valuestring, key)) label = i;
            item_add_choice(r, ctx, t->valuestring);
        }
    }
    free(ctx);
    if (r->n == 0) return line_bad(&r->src, "no choices");
    if (label < 0) return line_bad(&r->src, "answerKey \"%s\" is none of the choices' labels", key);
    item_commit(r, label);
    return 1;
}

static int read_winogrande(Reader *r, const cJSON *o)
{
    const char *sentence = str_field(o, "sentence"), *o1 = str_field(o, "option1"), *o2 = str_field(o, "option2");
    const char *ans = str_field(o, "answer");
    if (!sentence || !o1 || !o2 || !ans) return line_bad(&r->src, "a WinoGrande item needs \"sentence\", \"option1\", \"option2\" and \"answer\"");
    const char *blank = strchr(sentence, '_');
    if (!blank) return line_bad(&r->src, "the sentence has no \"_\"");
    if (strcmp(ans, "1") && strcmp(ans, "2")) return line_bad(&r->src, "\"answer\" is not \"1\" or \"2\"");
    /* the continuation: the words after the blank, stripped (the " " before them is added as for every choice) */
    const char *ws = " \t\n\r\v\f", *after = blank + 1 + strspn(blank + 1, ws);
    size_t n = strlen(after);
    while (n && strchr(ws, after[n - 1])) n--;
    char *suffix = copy_n(after, n);
    if (!*suffix) { free(suffix); return line_bad(&r->src, "nothing after the blank to score"); }
    const char *opts[2] = {o1, o2};
    for (int i = 0; i < 2; i++) {
        char *ctx = xasprintf("%.*s%s", (int)(blank - sentence), sentence, opts[i]);
        item_add_choice(r, ctx, suffix);
        free(ctx);
    }
    free(suffix);
    item_commit(r, ans[0] - '1');
    return 1;
}

/* PIQA's labels: 0 or 1 a line, aligned with the items' lines. */
static int *read_labels(const char *path, size_t *n)
{
    size_t len;
    char *text = read_file(path, (size_t)1 << 24, &len);   /* 16 MiB: a labels file is a byte or two an item */
    int *labels = NULL;
    *n = 0;
    uint64_t line = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p)), *end = nl ? nl : text + len;
        line++;
        size_t k = (size_t)(end - p);
        while (k && (p[k - 1] == '\r' || p[k - 1] == ' ')) k--;
        if (k != 1 || (*p != '0' && *p != '1'))
            die("%s, line %llu: a PIQA label is 0 or 1, got \"%.*s\"", path, (unsigned long long)line, (int)k, p);
        labels = xrealloc(labels, (*n + 1) * sizeof(int));
        labels[(*n)++] = *p - '0';
        p = end + 1;
    }
    free(text);
    return labels;
}

/* Item order for --limit with a seed: a seeded sample, kept in file order. */
static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void keep_items(Task *t, size_t limit, uint64_t seed)
{
    if (!limit || limit >= t->n_items) return;
    size_t *idx = xmalloc(t->n_items * sizeof(size_t));
    for (size_t i = 0; i < t->n_items; i++) idx[i] = i;
    if (seed) {
        uint64_t st = seed;
        for (size_t i = 0; i < limit; i++) {   /* the first `limit` of a Fisher-Yates shuffle */
            size_t j = i + (size_t)(splitmix64(&st) % (t->n_items - i)), tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
        }
        qsort(idx, limit, sizeof(size_t), cmp_size);
    }
    /* compact items and their requests, in order */
    Item *items = xmalloc(limit * sizeof(Item));
    size_t n_req = 0;
    for (size_t i = 0; i < limit; i++) n_req += (size_t)t->items[idx[i]].n_choices;
    Request *req = xmalloc(n_req * sizeof(Request));
    char *kept = xcalloc(t->n_items, 1);
    n_req = 0;
    for (size_t i = 0; i < limit; i++) {
        Item it = t->items[idx[i]];
        kept[idx[i]] = 1;
        memcpy(req + n_req, t->requests + it.first, (size_t)it.n_choices * sizeof(Request));
        it.first = n_req;
        n_req += (size_t)it.n_choices;
        items[i] = it;
    }
    for (size_t i = 0; i < t->n_items; i++) {
        if (kept[i]) continue;
        for (int c = 0; c < t->items[i].n_choices; c++) request_free(&t->requests[t->items[i].first + (size_t)c]);
        free(t->items[i].chars);
    }
    free(kept);
    free(t->items);
    free(t->requests);
    t->items = items;
    t->requests = req;
    t->n_items = limit;
    t->n_requests = n_req;
    free(idx);
}

void task_read(Task *t, TaskKind kind, const char *path, const char *labels_path, const Scorer *s, int skip_bad, size_t limit,
               uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    size_t n_labels = 0;
    int *labels = NULL;
    if (kind == TASK_PIQA) {
        if (!labels_path) usage_error("piqa needs its labels file (--labels FILE)");
        labels = read_labels(labels_path, &n_labels);
    } else if (labels_path) {
        usage_error("--labels goes with piqa");
    }
    size_t len;
    char *text = read_file(path, (size_t)1 << 32, &len);   /* 4 GiB: benchmarks are megabytes */
    Reader r = {.t = t, .s = s, .src = {.path = path, .skip_bad = skip_bad}};
    size_t n_lines = 0;
    for (char *p = text; p < text + len;) {
        char *end = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = end ? (size_t)(end - p) : (size_t)(text + len - p);
        r.src.line++;
        char *next = p + n + 1;
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        if (n == 0) { p = next; continue; }   /* blank lines are no items */
        n_lines++;
        size_t err = 0;
        cJSON *o = json_has_nul_escape(p, n) ? NULL : json_parse(p, n, &err);
        if (!o) {
            line_bad(&r.src, "not JSON (byte %zu)", err + 1);
        } else if (!cJSON_IsObject(o)) {
            line_bad(&r.src, "not a JSON object");
        } else if (kind == TASK_PIQA) {
            if (n_lines > n_labels) die("%s: more items than %s has labels (%zu)", path, labels_path, n_labels);
            read_piqa(&r, o, labels[n_lines - 1]);
        } else {
            int (*const readers[])(Reader *, const cJSON *) = {read_choice, NULL, read_lambada, read_hellaswag, read_arc, read_winogrande};
            readers[kind](&r, o);
        }
        item_drop(&r);   /* the choices of a line that was not an item */
        cJSON_Delete(o);
        p = next;
    }
    t->skipped = r.src.skipped;
    if (kind == TASK_PIQA && n_lines != n_labels)
        die("%s has %zu items, %s %zu labels: they must be aligned line by line", path, n_lines, labels_path, n_labels);
    if (t->n_items == 0) die("%s: no items", path);
    free(text);
    free(labels);
    free(r.contexts);
    free(r.choices);
    keep_items(t, limit, seed);
}

void task_free(Task *t)
{
    for (size_t i = 0; i < t->n_requests; i++) request_free(&t->requests[i]);
    for (size_t i = 0; i < t->n_items; i++) free(t->items[i].chars);
    free(t->requests);
    free(t->items);
    memset(t, 0, sizeof *t);
}

/* ---- metrics -------------------------------------------------------------- */

static int has_norm(TaskKind k) { return k != TASK_LAMBADA && k != TASK_WINOGRANDE; }

int item_pred(const Task *t, size_t i, int norm)
{
    const Item *it = &t->items[i];
    if (norm && !has_norm(t->kind)) return -1;
    int best = 0;
    double bv = 0;
    for (int c = 0; c < it->n_choices; c++) {   /* the first of equal scores, as numpy's argmax */
        double v = t->requests[it->first + (size_t)c].ll / (norm ? (double)(it->chars[c] ? it->chars[c] : 1) : 1.0);
        if (c == 0 || v > bv) { best = c; bv = v; }
    }
    return best;
}

TaskResult task_result(const Task *t)
{
    TaskResult r = {.n = t->n_items, .acc_norm = NAN, .acc_norm_stderr = NAN, .perplexity = NAN};
    double *x = xmalloc(t->n_items * sizeof(double)), ll = 0;
    for (size_t i = 0; i < t->n_items; i++) {
        const Item *it = &t->items[i];
        int trunc = 0;
        for (int c = 0; c < it->n_choices; c++) trunc |= t->requests[it->first + (size_t)c].truncated;
        r.truncated += (size_t)trunc;
        if (t->kind == TASK_LAMBADA) {
            x[i] = t->requests[it->first].is_greedy;
            ll += t->requests[it->first].ll;
        } else {
            x[i] = item_pred(t, i, 0) == it->label;
        }
    }
    mean_stderr(x, t->n_items, &r.acc, &r.acc_stderr);
    if (t->kind == TASK_LAMBADA) r.perplexity = exp(-ll / (double)t->n_items);
    if (has_norm(t->kind)) {
        for (size_t i = 0; i < t->n_items; i++) x[i] = item_pred(t, i, 1) == t->items[i].label;
        mean_stderr(x, t->n_items, &r.acc_norm, &r.acc_norm_stderr);
    }
    free(x);
    return r;
}

void task_write_examples(const Task *t, FILE *f, const char *name)
{
    for (size_t i = 0; i < t->n_items; i++) {
        const Item *it = &t->items[i];
        cJSON *j = json_obj(), *ll = json_arr(), *g = json_arr();
        int trunc = 0;
        json_add_u64(j, "index", i);
        json_add_u64(j, "line", it->line);
        for (int c = 0; c < it->n_choices; c++) {
            const Request *q = &t->requests[it->first + (size_t)c];
            json_push(ll, cJSON_CreateNumber(q->ll));
            json_push(g, cJSON_CreateBool(q->is_greedy));
            trunc |= q->truncated;
        }
        json_add(j, "ll", ll);
        json_add(j, "is_greedy", g);
        json_add_u64(j, "pred", (uint64_t)item_pred(t, i, 0));
        if (has_norm(t->kind)) json_add_u64(j, "pred_norm", (uint64_t)item_pred(t, i, 1));
        else json_add(j, "pred_norm", cJSON_CreateNull());
        json_add_u64(j, "label", (uint64_t)it->label);
        json_add_bool(j, "truncated", trunc);
        char *s = json_print(j, 0);
        fprintf(f, "%s\n", s);
        if (ferror(f)) die("%s: write error", name);
        free(s);
        cJSON_Delete(j);
    }
}
