/* Scoring: requests by lm-evaluation-harness's rules, documents' loss over
 * windows; see score.h. */
#include "eval/score.h"
#include "base/base.h"
#include "train/ckpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void scorer_open(Scorer *s, const char *ckpt, const Tokenizer *tok, const char *device, int window, int batch, int verbose)
{
    memset(s, 0, sizeof *s);
    char *dir = ckpt_resolve(ckpt);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", ckpt);
    Config c;
    TokHeader ck_tok, file_tok = tokenizer_header(tok);
    cJSON_Delete(ckpt_read_config(dir, &c, &ck_tok));
    tokenizer_match(&ck_tok, dir, &file_tok, "the tokenizer given");
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    if (eot < 0 || eot >= c.vocab_size) die("the tokenizer has no %s token inside the model's vocabulary", TOK_ENDOFTEXT);
    s->eot = (uint32_t)eot;
    s->tok = tok;
    s->window = window > 0 && window < c.max_seq_len ? window : c.max_seq_len;
    s->batch = batch > 0 ? batch : 1;
    s->cfg = c;
    s->dir = dir;
    s->verbose = verbose;
    const char *why;
    s->ops = device_select(device, &why);
    if (verbose) info("device: %s (%s)", s->ops->name, why);
    s->counts = xcalloc((size_t)c.n_layers * c.n_experts, sizeof(float));
    s->route = xcalloc((size_t)c.n_layers, sizeof(RouteSums));
    s->pending = xmalloc((size_t)s->batch * (s->window + 1) * sizeof(uint32_t));
    s->pending_targets = xmalloc((size_t)s->batch * sizeof(int));
    s->scratch = xmalloc((size_t)c.vocab_size * sizeof(float));
}

/* The model on its device, with buffers for rows of up to T tokens: opened
 * at the first forward, when the longest input is known (requests are far
 * shorter than the window, and the buffers grow with its square). */
static void scorer_device(Scorer *s, int T)
{
    if (s->dev) {
        if (T > s->rows) BUG("a forward of %d tokens on a model opened for rows of %d (scorer_reserve first)", T, s->rows);
        return;
    }
    s->rows = T;
    s->dev = device_open(s->ops, &s->model, &s->cfg, s->batch, T, NULL, s->verbose);
    ckpt_read_tensors(s->dir, "model.safetensors", s->model.tensors, s->model.n_tensors, s->model.params, ckpt_model_hash(s->dir), 0);
    s->routing.kind = ckpt_read_routing_bias(s->dir, s->model.expert_bias, (size_t)s->cfg.n_layers * s->cfg.n_experts)
                          ? BALANCE_BIAS : BALANCE_NONE;   /* an aux-loss-free run routes with its bias, as in training */
    device_set_state(s->dev, s->model.params, NULL);
}

void scorer_reserve(Scorer *s, int T) { scorer_device(s, T < s->window ? (T > 1 ? T : 1) : s->window); }

void scorer_close(Scorer *s)
{
    device_close(s->dev);   /* and the host model */
    free(s->dir);
    free(s->counts);
    free(s->route);
    free(s->pending);
    free(s->pending_targets);
    free(s->scratch);
    memset(s, 0, sizeof *s);
}

/* ---- requests ------------------------------------------------------------ */

static void tokids_push(TokIds *v, uint32_t id)
{
    if (v->len == v->cap) v->ids = xrealloc(v->ids, (v->cap = 2 * v->cap + 16) * sizeof(uint32_t));
    v->ids[v->len++] = id;
}

void request_make(Request *r, const Scorer *s, const char *context, size_t context_len, const char *continuation,
                  size_t continuation_len)
{
    memset(r, 0, sizeof *r);
    size_t n_spaces = 0;
    while (n_spaces < context_len && context[context_len - 1 - n_spaces] == ' ') n_spaces++;
    size_t ctx_len = context_len - n_spaces, whole_len = context_len + continuation_len;
    /* context + continuation, the context's trailing spaces now the continuation's */
    char *whole = xmalloc(whole_len + 1);
    memcpy(whole, context, context_len);
    memcpy(whole + context_len, continuation, continuation_len);
    TokIds ctx = {0}, all = {0};
    if (ctx_len == 0) {   /* an empty context: the end-of-text token, then the continuation alone */
        tokids_push(&ctx, s->eot);
        tokids_push(&all, s->eot);
        tokenizer_encode(s->tok, &all, (const uint8_t *)whole, whole_len, 0);
    } else {
        tokenizer_encode(s->tok, &ctx, (const uint8_t *)whole, ctx_len, 0);
        tokenizer_encode(s->tok, &all, (const uint8_t *)whole, whole_len, 0);
    }
    if (all.len < ctx.len) BUG("the whole encodes shorter than its context");
    r->n_ctx = ctx.len;
    r->n_cont = all.len - ctx.len;
    r->ids = xmalloc((all.len ? all.len : 1) * sizeof(uint32_t));
    memcpy(r->ids, all.ids, all.len * sizeof(uint32_t));
    tokids_free(&ctx);
    tokids_free(&all);
    free(whole);
}

void request_free(Request *r)
{
    free(r->ids);
    r->ids = NULL;
}

/* log_softmax(logits[V]) at `target`; *greedy: target is the first argmax. */
static double logprob(const float *logits, int V, uint32_t target, int *greedy, float *scratch)
{
    float mx = logits[0];
#pragma omp simd reduction(max : mx)
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    *greedy = logits[target] == mx;
    for (uint32_t v = 0; *greedy && v < target; v++) *greedy = logits[v] != mx;   /* the first of equal maxima, as argmax */
    return (double)logits[target] - log_sum_exp(logits, V, scratch);
}

/* The tokens the model sees for r: the last W + 1 of ctx + cont, less the last. */
static size_t request_input(const Request *r, int W, const uint32_t **inp)
{
    size_t n = r->n_ctx + r->n_cont, keep = n < (size_t)W + 1 ? n : (size_t)W + 1;
    *inp = r->ids + (n - keep);
    return keep - 1;
}

static int by_input_length(const void *a, const void *b)
{
    const Request *x = *(Request *const *)a, *y = *(Request *const *)b;
    size_t nx = x->n_ctx + x->n_cont, ny = y->n_ctx + y->n_cont;
    return nx < ny ? 1 : nx > ny ? -1 : (x < y ? -1 : x > y);   /* ties in input order: deterministic */
}

void score_requests(Scorer *s, Request *r, size_t n)
{
    const int W = s->window, V = s->cfg.vocab_size;
    Request **order = xmalloc((n ? n : 1) * sizeof *order);
    for (size_t i = 0; i < n; i++) {
        if (r[i].n_cont == 0) die("a request has an empty continuation (its choice encodes to no token)");
        if (r[i].n_cont > (size_t)W) die("a continuation of %zu tokens is longer than the model's window of %d", r[i].n_cont, W);
        order[i] = &r[i];
    }
    qsort(order, n, sizeof *order, by_input_length);   /* the longest first: rows of a forward alike */
    if (n) {
        const uint32_t *inp;
        scorer_device(s, (int)request_input(order[0], W, &inp));
    }
    uint32_t *inputs = xmalloc((size_t)s->batch * W * sizeof(uint32_t));
    float *wanted = xmalloc((size_t)s->batch * W * sizeof(float));   /* the rows whose logits are read */
    for (size_t at = 0; at < n;) {
        const uint32_t *inp;
        int B = 0, T = (int)request_input(order[at], W, &inp);
        for (; B < s->batch && at + B < n; B++) {   /* right-padded: causal, so padding changes no earlier position */
            size_t len = request_input(order[at + B], W, &inp);
            memcpy(inputs + (size_t)B * T, inp, len * sizeof(uint32_t));
            for (size_t t = len; t < (size_t)T; t++) inputs[(size_t)B * T + t] = s->eot;
            for (size_t t = 0; t < (size_t)T; t++) wanted[(size_t)B * T + t] = t + order[at + B]->n_cont >= len && t < len;
        }
        device_forward(s->dev, inputs, NULL, wanted, NULL, B, T, &s->routing);
        const float *logits = device_logits(s->dev);
        for (int b = 0; b < B; b++) {
            Request *q = order[at + b];
            size_t len = request_input(q, W, &inp);
            q->truncated = q->n_ctx + q->n_cont > (size_t)W + 1;
            q->ll = 0;
            q->is_greedy = 1;
            for (size_t j = 0; j < q->n_cont; j++) {   /* the continuation's tokens are the last n_cont of inp + 1 */
                size_t pos = len - q->n_cont + j;
                int greedy;
                q->ll += logprob(logits + ((size_t)b * T + pos) * V, V, inp[pos + 1], &greedy, s->scratch);
                q->is_greedy &= greedy;
            }
        }
        at += (size_t)B;
    }
    free(inputs);
    free(wanted);
    free(order);
}

/* ---- documents ----------------------------------------------------------- */

static void add_routing(Scorer *s)
{
    const Config *c = &s->cfg;
    for (size_t i = 0; i < (size_t)c->n_layers * c->n_experts; i++) s->counts[i] += s->model.counts[i];
    for (int l = 0; l < c->n_layers; l++) {
        RouteSums r = device_route_sums(s->dev, l);
        s->route[l].tokens += r.tokens;
        s->route[l].top1_p += r.top1_p;
        s->route[l].entropy += r.entropy;
    }
}

/* One forward of B rows of T inputs (row stride `stride`, target after
 * each row's inputs): the loss of each row's last targets[b] positions. */
static void score_rows(Scorer *s, LossSums *sum, const uint32_t *rows, size_t stride, const int *targets, int B, int T)
{
    const int V = s->cfg.vocab_size;
    uint32_t *inputs = xmalloc((size_t)B * T * sizeof(uint32_t));
    for (int b = 0; b < B; b++) memcpy(inputs + (size_t)b * T, rows + b * stride, (size_t)T * sizeof(uint32_t));
    device_forward(s->dev, inputs, NULL, NULL, NULL, B, T, &s->routing);
    add_routing(s);
    const float *logits = device_logits(s->dev);
    for (int b = 0; b < B; b++) {
        for (int pos = T - targets[b]; pos < T; pos++) {
            int greedy;
            sum->nll -= logprob(logits + ((size_t)b * T + pos) * V, V, rows[b * stride + pos + 1], &greedy, s->scratch);
        }
        sum->tokens += (uint64_t)targets[b];
        sum->windows++;
    }
    free(inputs);
}

void score_flush(Scorer *s, LossSums *sum)
{
    if (s->n_pending) score_rows(s, sum, s->pending, (size_t)s->window + 1, s->pending_targets, s->n_pending, s->window);
    s->n_pending = 0;
}

static void queue_full_window(Scorer *s, LossSums *sum, const uint32_t *from, int targets)
{
    const int W = s->window;
    memcpy(s->pending + (size_t)s->n_pending * (W + 1), from, (size_t)(W + 1) * sizeof(uint32_t));
    s->pending_targets[s->n_pending++] = targets;
    if (s->n_pending == s->batch) score_flush(s, sum);
}

void score_document(Scorer *s, LossSums *sum, const uint32_t *ids, size_t n, uint64_t text_bytes, int stride)
{
    const size_t W = (size_t)s->window;
    if (stride <= 0 || (size_t)stride > W) BUG("stride %d outside 1 .. %zu", stride, W);
    scorer_device(s, s->window);
    sum->bytes += text_bytes;
    if (n == 0) return;
    uint32_t *seq = xmalloc((n + 1) * sizeof(uint32_t));   /* s = [eot] + ids: targets are positions 1 .. n */
    seq[0] = s->eot;
    memcpy(seq + 1, ids, n * sizeof(uint32_t));
    /* The chunks that end within the window all start at 0: one forward over
     * their union predicts each target from the same tokens they would. */
    size_t first = W / (size_t)stride * (size_t)stride, done = first < n ? first : n;
    int t0 = (int)done;
    if (done == W) queue_full_window(s, sum, seq, t0);
    else score_rows(s, sum, seq, 0, &t0, 1, (int)done);
    while (done < n) {
        size_t end = done + (size_t)stride < n ? done + (size_t)stride : n;   /* targets (done, end] */
        queue_full_window(s, sum, seq + (end - W), (int)(end - done));
        done = end;
    }
    free(seq);
}

/* ---- marked tokens ------------------------------------------------------- */

/* The inputs m feeds the model: its first W + 1 tokens, less the last. */
static size_t marked_inputs(const Marked *m, int W)
{
    size_t keep = m->len < (size_t)W + 1 ? m->len : (size_t)W + 1;
    return keep ? keep - 1 : 0;
}

static int by_marked_length(const void *a, const void *b)
{
    const Marked *x = *(Marked *const *)a, *y = *(Marked *const *)b;
    return x->len < y->len ? 1 : x->len > y->len ? -1 : (x < y ? -1 : x > y);   /* ties in input order */
}

void score_marked(Scorer *s, Marked *m, size_t n)
{
    const int W = s->window, V = s->cfg.vocab_size;
    Marked **order = xmalloc((n ? n : 1) * sizeof *order);
    for (size_t i = 0; i < n; i++) {
        m[i].nll = 0;
        m[i].tokens = 0;
        m[i].truncated = m[i].len > (size_t)W + 1;
        order[i] = &m[i];
    }
    qsort(order, n, sizeof *order, by_marked_length);
    if (n && marked_inputs(order[0], W)) scorer_device(s, (int)marked_inputs(order[0], W));
    uint32_t *inputs = xmalloc((size_t)s->batch * W * sizeof(uint32_t));
    float *wanted = xmalloc((size_t)s->batch * W * sizeof(float));   /* the rows whose logits are read */
    for (size_t at = 0; at < n;) {
        int B = 0, T = (int)marked_inputs(order[at], W);
        if (T == 0) break;   /* this one and the rest are a token or none: nothing predicted */
        for (; B < s->batch && at + B < n; B++) {   /* right-padded: causal, so padding changes no earlier position */
            const Marked *q = order[at + B];
            size_t len = marked_inputs(q, W);
            memcpy(inputs + (size_t)B * T, q->ids, len * sizeof(uint32_t));
            for (size_t t = 0; t < (size_t)T; t++) {
                if (t >= len) inputs[(size_t)B * T + t] = s->eot;
                wanted[(size_t)B * T + t] = t < len && q->learn[t + 1];
            }
        }
        device_forward(s->dev, inputs, NULL, wanted, NULL, B, T, &s->routing);
        const float *logits = device_logits(s->dev);
        for (int b = 0; b < B; b++) {
            Marked *q = order[at + b];
            for (size_t t = 0; t < (size_t)T; t++) {
                if (!wanted[(size_t)b * T + t]) continue;
                int greedy;
                q->nll -= logprob(logits + ((size_t)b * T + t) * V, V, q->ids[t + 1], &greedy, s->scratch);
                q->tokens++;
            }
        }
        at += (size_t)B;
    }
    free(inputs);
    free(wanted);
    free(order);
}

/* ---- greedy continuations ------------------------------------------------ */

/* The first largest of logits[V]: argmax. */
static uint32_t argmax(const float *logits, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++) best = logits[v] > logits[best] ? v : best;
    return (uint32_t)best;
}

/* No KV cache yet: every token runs the whole sequence (its last W tokens)
 * through the model again, with the logits of its last position only. */
int score_greedy(Scorer *s, const uint32_t *prompt, size_t n, const uint32_t *stop, int n_stop, int max_new, TokIds *out,
                 int *cut)
{
    const int W = s->window, V = s->cfg.vocab_size;
    if (n == 0) BUG("an empty prompt");
    size_t cap = n + (size_t)max_new;
    uint32_t *seq = xmalloc(cap * sizeof(uint32_t));
    float *wanted = xcalloc((size_t)W, sizeof(float));
    memcpy(seq, prompt, n * sizeof(uint32_t));
    size_t len = n;
    int ended = 0;
    *cut = 0;
    for (int i = 0; i < max_new && !ended; i++) {
        size_t T = len < (size_t)W ? len : (size_t)W;
        *cut |= len > (size_t)W;
        scorer_device(s, (int)T);
        wanted[T - 1] = 1;
        device_forward(s->dev, seq + (len - T), NULL, wanted, NULL, 1, (int)T, &s->routing);
        wanted[T - 1] = 0;
        uint32_t next = argmax(device_logits(s->dev) + (T - 1) * (size_t)V, V);
        for (int k = 0; k < n_stop; k++) ended |= next == stop[k];
        if (!ended) seq[len++] = next;
    }
    for (size_t i = n; i < len; i++) tokids_push(out, seq[i]);
    free(seq);
    free(wanted);
    return ended;
}
