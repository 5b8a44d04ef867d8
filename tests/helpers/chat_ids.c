/* chat_ids TOKENIZER [--generation-prompt] [--train-all] < {"messages": [...]}:
 * the conversation as chat_encode (lib/text/chat.c) makes it, a line per
 * token: its id, its loss mask bit, its bytes in hex (a token may hold part
 * of a character), for tests/chat.t and tests/interop/run.py.
 * chat_ids --jinja: the template as Jinja (chat_template_jinja), for
 * tests/export.t, which holds no copy of it. */
#include "base/base.h"
#include "base/json.h"
#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc == 2 && !strcmp(argv[1], "--jinja")) {
        fputs(chat_template_jinja, stdout);
        return 0;
    }
    if (argc < 2) usage_error("usage: chat_ids TOKENIZER [--generation-prompt] [--train-all] < conversation.json | chat_ids --jinja");
    int gen = 0, all = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--generation-prompt")) gen = 1;
        else if (!strcmp(argv[i], "--train-all")) all = 1;
        else usage_error("unknown option '%s'", argv[i]);
    }
    Tokenizer *tok = tokenizer_load(argv[1], NULL);
    chat_check_tokenizer(tok, argv[1]);
    size_t len;
    char *text = read_file("-", (size_t)1 << 30, &len);
    cJSON *j = json_parse(text, len, NULL);
    const cJSON *msgs = j ? cJSON_GetObjectItemCaseSensitive(j, "messages") : NULL;
    if (!cJSON_IsArray(msgs)) die("<stdin>: not {\"messages\": [...]}");
    size_t n = (size_t)cJSON_GetArraySize(msgs), i = 0;
    ChatMessage *m = xcalloc(n ? n : 1, sizeof *m);
    for (const cJSON *e = msgs->child; e; e = e->next, i++) {
        if (chat_role_parse(json_req_str(e, "role", "<stdin>"), &m[i].role)) die("<stdin>: unknown role");
        m[i].content = json_req_str(e, "content", "<stdin>");
    }
    TokIds ids = {0};
    uint8_t *mask = NULL;
    size_t cap = 0;
    chat_encode(tok, m, n, gen, all, &ids, &mask, &cap);
    TokBytes b = {0};
    for (size_t k = 0; k < ids.len; k++) {
        b.len = 0;
        tokenizer_decode(tok, &b, &ids.ids[k], 1);
        printf("%u %d ", ids.ids[k], mask[k]);
        for (size_t c = 0; c < b.len; c++) printf("%02x", b.bytes[c]);
        printf("\n");
    }
    tokbytes_free(&b);
    tokids_free(&ids);
    free(mask);
    free(m);
    cJSON_Delete(j);
    free(text);
    tokenizer_free(tok);
    return 0;
}
