/* Chat data (lib/train/chat_data.c) on a byte-level tokenizer with the chat
 * tokens: conversations read and skipped as documented, rows packed with
 * positions restarting, each target its conversation's next token, the
 * loss only on the assistants' tokens, padding masked; bad lines named. */
#include "../tap.h"
#include "byte_tokenizer.h"
#include "base/base.h"
#include "text/pretok.h"
#include "text/tokenizer.h"
#include "train/chat_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *write_tmp(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    write_file_atomic(path, text, strlen(text));
    return path;
}

/* Whether reading path dies with a message containing want (in a child). */
static int dies_with(const char *path, Tokenizer *tok, const char *want)
{
    int fd[2];
    if (pipe(fd)) BUG("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        ChatSet s;
        chatset_read(&s, path, tok, 0, 0, 1000, 1);
        _exit(0);
    }
    close(fd[1]);
    char buf[1024] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!strstr(buf, want)) diag("got: %s", buf);
    return WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(buf, want);
}

/* Best-fit decreasing on 500 conversations of 3 to 60 tokens in rows of
 * 64: each laid out once, whole (its positions 0, 1, ... and its tokens), in
 * no more rows than taking them in order would fill. */
static void best_fit_check(void)
{
    enum { N = 500, T = 64 };
    ChatSet s = {.n = N, .conv = xcalloc(N, sizeof(Conversation))};
    size_t order[N], next_fit = 0, tokens = 0;
    uint64_t st = 3;
    int at = T;
    for (size_t k = 0; k < N; k++) {
        size_t len = 3 + (size_t)(splitmix64(&st) % 58);
        Conversation *c = &s.conv[k];
        c->len = len;
        c->ids = xmalloc(len * sizeof *c->ids);
        c->learn = xcalloc(len, 1);
        for (size_t t = 0; t < len; t++) c->ids[t] = (uint32_t)(k * 64 + t);   /* says whose token, and where */
        order[k] = k;
        tokens += len;
        if (at + (int)len > T) { next_fit++; at = 0; }
        at += (int)len;
    }
    ChatRows r;
    chat_rows(&r, &s, order, N, T, 1, 99999);
    int whole = 1;
    size_t seen = 0;
    for (size_t i = 0; i < r.n_rows * T; i++) {
        if (r.inputs[i] == 99999) continue;
        uint32_t t = r.inputs[i] % 64;   /* a token of conversation inputs / 64 at place t */
        whole &= r.pos[i] == (int)t && (t == 0 || r.inputs[i - 1] == r.inputs[i] - 1);
        seen++;
    }
    ok(whole && seen == tokens && r.tokens == tokens, "best-fit: every conversation once, whole, in place (%zu of %zu tokens)", seen,
       tokens);
    ok(r.n_rows <= next_fit, "in no more rows than in order: %zu against %zu (%.1f%% full against %.1f%%)", r.n_rows, next_fit,
       100.0 * (double)tokens / ((double)r.n_rows * T), 100.0 * (double)tokens / ((double)next_fit * T));
    chat_rows_free(&r);
    chatset_free(&s);
}

int main(void)
{
    sg_init("test_chat_data");
    char tmpl[] = "/tmp/sigma-chat.XXXXXX";
    char *dir = mkdtemp(tmpl);
    Tokenizer *tok = byte_tokenizer();
    char *path = write_tmp(dir, "chat.jsonl",
                           "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n"
                           "\n"
                           "{\"messages\": [{\"role\": \"user\", \"content\": \"no reply\"}]}\n"
                           "{\"prompt\": \"2+2\", \"completion\": \"4\"}\n"
                           "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a long answer that does not fit a row, "
                           "however the row is packed: it goes on and on, well past sixty-four bytes\"}]}\n");
    ChatSet s;
    chatset_read(&s, path, tok, 0, 0, 65, 1);
    ok(s.n == 3 && s.no_assistant == 1 && s.cut == 1 && s.dropped == 0 && s.bad == 0,
       "3 conversations, one without an assistant skipped, one cut (%zu, %llu, %llu)", s.n,
       (unsigned long long)s.no_assistant, (unsigned long long)s.cut);
    /* <|im_start|> "user\nhi" <|im_end|> "\n" <|im_start|> "assistant\nyo" <|im_end|> "\n" */
    const Conversation *c = &s.conv[0];
    ok(c->len == 1 + 7 + 1 + 1 + 1 + 12 + 1 + 1, "the first conversation is its ChatML bytes and specials (%zu tokens)", c->len);
    int learned = 0;
    for (size_t i = 0; i < c->len; i++) learned += c->learn[i];
    ok(learned == 3 && c->learn[c->len - 2] && !c->learn[c->len - 1] && c->ids[c->len - 2] == 258,
       "it learns 'y', 'o' and <|im_end|>, not the newline after");
    ok(s.conv[2].len == 65, "the long one is cut to the rows' length + 1");

    size_t order[3] = {0, 1, 2};
    ChatRows r;
    chat_rows(&r, &s, order, 3, 64, 1, 256);
    /* best-fit decreasing: the long one first, in a row of its own; then the two short ones share the second */
    ok(r.n_rows == 2, "packed: the long one fills a row, the two short ones share the other (%zu rows)", r.n_rows);
    int pos_ok = 1, tg_ok = 1;
    size_t a = c->len, b = s.conv[1].len;
    const int *pos = r.pos + 64;
    const uint32_t *tg = r.targets + 64;
    const float *mask = r.mask + 64;
    for (size_t t = 0; t < a; t++) pos_ok &= pos[t] == (int)t;
    for (size_t t = 0; t < b; t++) pos_ok &= pos[a + t] == (int)t;
    for (size_t t = 0; t + 1 < a; t++) tg_ok &= tg[t] == c->ids[t + 1] && mask[t] == c->learn[t + 1];
    ok(pos_ok, "positions restart at each conversation");
    ok(tg_ok && mask[a - 1] == 0, "targets are the next token of the same conversation; its last token has none");
    float pad_mask = 0;
    for (size_t t = a + b; t < 64; t++) pad_mask += mask[t];
    ok(pad_mask == 0 && pos[a + b] == 0, "the rest of the row is padding: masked, a document of its own");
    ok(r.mask[63] == 1 && r.targets[63] == s.conv[2].ids[64], "a cut conversation predicts its last token too");
    chat_rows_free(&r);
    chat_rows(&r, &s, order, 3, 64, 0, 256);
    ok(r.n_rows == 3, "unpacked: a row each");
    chat_rows_free(&r);
    best_fit_check();
    chat_rows_free(&r);
    chatset_free(&s);
    chatset_read(&s, path, tok, 0, 0, 65, 0);
    ok(s.n == 2 && s.dropped == 1, "or the long one dropped");
    chatset_free(&s);

    char *bad = write_tmp(dir, "bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                             "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n");
    ok(dies_with(bad, tok, "bad.jsonl, line 2: message 1: unknown role \"robot\""), "an unknown role names the file and line");
    char *bad2 = write_tmp(dir, "bad2.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}\n");
    ok(dies_with(bad2, tok, "bad2.jsonl, line 1: message 1: \"content\" is not a string"), "a content that is not a string");
    char *bad3 = write_tmp(dir, "bad3.jsonl", "[1, 2]\nnot json\n");
    ok(dies_with(bad3, tok, "bad3.jsonl, line 1: not a JSON object"), "a line that is not an object");
    chatset_read(&s, bad3, tok, 0, 1, 100, 1);
    ok(s.n == 0 && s.bad == 2, "--skip-bad counts them instead");
    chatset_free(&s);
    tokenizer_free(tok);
    free(path);
    free(bad);
    free(bad2);
    free(bad3);
    remove_tree(dir);
    return tap_done();
}
