/* The chat task's pieces that need no model (lib/eval/chat_task.c): exact
 * match and SQuAD's token F1 on known cases, and each conversation's prompt
 * and reference as chat_encode makes them: the messages before the last
 * assistant reply with the generation prompt, and that reply's content. */
#include "../tap.h"
#include "byte_tokenizer.h"
#include "base/base.h"
#include "eval/chat_task.h"
#include "text/chat.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void metrics(void)
{
    ok(chat_exact("print lines", "print lines"), "exact: the same text");
    ok(chat_exact("  print lines\n", "\tprint lines "), "exact: white space at the ends does not count");
    ok(!chat_exact("print  lines", "print lines"), "exact: white space inside does");
    ok(!chat_exact("Print lines", "print lines"), "exact: case does");
    ok(chat_f1("Print LINES", "print lines") == 1, "f1: lowercased words");
    ok(chat_f1("print  lines\n", " print lines") == 1, "f1: any white space separates words");
    ok(fabs(chat_f1("print lines that match", "print lines that match patterns") - 2.0 * 4 / 9) < 1e-12,
       "f1: precision 4/4, recall 4/5: 8/9");
    ok(fabs(chat_f1("the the the", "the cat") - 0.4) < 1e-12, "f1: words counted with multiplicity (1 in common: 2/5)");
    ok(chat_f1("copy files", "move directories") == 0, "f1: nothing in common is 0");
    ok(chat_f1("", "") == 1 && chat_f1(" ", "x") == 0 && chat_f1("x", "") == 0, "f1: empty: 1 against empty, else 0");
    ok(chat_f1("ÉCOLE", "école") == 1, "f1: lowercasing is Unicode's");
}

/* tok's ids of chat_encode(m[n], add_generation_prompt) */
static TokIds encode(const Tokenizer *tok, const ChatMessage *m, size_t n, int gen)
{
    TokIds ids = {0};
    chat_encode(tok, m, n, gen, 0, &ids, NULL, NULL);
    return ids;
}

static int same_ids(const TokIds *a, const TokIds *b)
{
    return a->len == b->len && !memcmp(a->ids, b->ids, a->len * sizeof(uint32_t));
}

static void prompts(void)
{
    Tokenizer *tok = byte_tokenizer();
    char dir[] = "/tmp/sigma-test-eval-chat.XXXXXX";
    if (!mkdtemp(dir)) BUG("mkdtemp");
    char *path = xasprintf("%s/chat.jsonl", dir);
    const char *text =
        "{\"prompt\": \"What does `ls` do?\", \"completion\": \" list directory contents\\n\"}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"a?\"},"
        " {\"role\": \"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c?\"},"
        " {\"role\": \"assistant\", \"content\": \"d e\"}, {\"role\": \"user\", \"content\": \"more?\"}]}\n";
    write_file_atomic(path, text, strlen(text));
    ChatTask t;
    chat_task_read(&t, path, tok, 0);
    ok(t.set.n == 2 && t.set.no_assistant == 1, "two conversations with an assistant turn, one without (skipped)");

    ChatMessage q1[] = {{ROLE_USER, "What does `ls` do?"}};
    TokIds want = encode(tok, q1, 1, 1);
    ok(same_ids(&t.items[0].prompt, &want), "prompt and completion: the prompt is the user turn and the generation prompt");
    ok(!strcmp(t.items[0].reference, "list directory contents"), "its reference: the completion, trimmed ('%s')",
       t.items[0].reference);
    tokids_free(&want);

    ChatMessage m[] = {{ROLE_SYSTEM, "Be brief."}, {ROLE_USER, "a?"}, {ROLE_ASSISTANT, "b"}, {ROLE_USER, "c?"}};
    want = encode(tok, m, 4, 1);
    ok(same_ids(&t.items[1].prompt, &want), "several turns: every message before the last reply, then the generation prompt");
    ok(!strcmp(t.items[1].reference, "d e"), "its reference: the last assistant message ('%s'), not a later user turn",
       t.items[1].reference);
    ok(t.marked[1].len == t.set.conv[1].len, "the loss sees the whole conversation");
    tokids_free(&want);
    chat_task_free(&t);
    unlink(path);
    rmdir(dir);
    free(path);
    tokenizer_free(tok);
}

int main(void)
{
    sg_init("test_eval_chat");
    metrics();
    prompts();
    return tap_done();
}
