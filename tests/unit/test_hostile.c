/* Hostile sizes and names, refused by the library before anything is
 * allocated for them: each case runs in a child with its address space
 * capped at 2 GiB (not under ASan, whose shadow needs more), so that an
 * allocation made before a check shows as "out of memory" instead of the
 * refusal that names the file and the field. */
#include "../tap.h"
#include "base/base.h"
#include "base/json.h"
#include "data/shard.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

static char dir[64];

/* fn(arg) must die (exit 1) with `want` in its message. */
static void refused(void (*fn)(const void *), const void *arg, const char *want, const char *name)
{
    int p[2];
    if (pipe(p) != 0) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        const char *san = getenv("SIGMA_SAN");
        if (!san || strcmp(san, "1")) {
            struct rlimit r = {2ul << 30, 2ul << 30};
            setrlimit(RLIMIT_AS, &r);
        }
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof buf - 1 && (got = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)got;
    buf[n] = 0;
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!ok(WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(buf, want), "%s", name))
        diag("wanted exit 1 and \"%s\"; got status %d and: %s", want, status, buf);
}

/* ---- a shard set whose shard claims many tokens, every checksum right ---- */

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) abort();
}

/* One raw shard of 16 payload bytes whose header says n_tokens, and a
 * manifest with shard_tokens that agrees with it and the file's checksum. */
static void big_shard_set(uint64_t n_tokens, uint64_t shard_tokens)
{
    uint8_t f[128 + 16] = {0};
    uint32_t u;
    uint64_t q;
    memcpy(f, "SIGSHARD", 8);
    u = 1; memcpy(f + 8, &u, 4);              /* version */
    u = 2; memcpy(f + 12, &u, 4);             /* width */
    u = 300; memcpy(f + 16, &u, 4);           /* vocabulary */
    memcpy(f + 24, &n_tokens, 8);
    q = 16; memcpy(f + 40, &q, 8);            /* payload bytes */
    q = XXH3_64bits(f + 128, 16); memcpy(f + 48, &q, 8); memcpy(f + 64, &q, 8);
    q = XXH3_64bits(NULL, 0); memcpy(f + 56, &q, 8);
    q = NO_ORDINAL; memcpy(f + 80, &q, 8);
    q = XXH3_64bits(f, 104); memcpy(f + 104, &q, 8);
    char *path = xasprintf("%s/train-000000.shard", dir);
    write_file(path, f, sizeof f);
    free(path);
    char hex[17];
    hex64(hex, XXH3_64bits(f, sizeof f));
    char *m = xasprintf("{\"format\": \"sigma-shards\", \"version\": 1, \"tokenizer\": {\"fingerprint\": \"%032d\", \"vocab_size\": 300},"
                        " \"token_width\": 2, \"compression\": \"none\", \"level\": 0, \"shard_tokens\": %llu,"
                        " \"split_rule\": {\"seed\": \"0000000000000000\", \"val_fraction\": 0}, \"documents\": 0, \"tokens\": %llu,"
                        " \"splits\": {\"train\": {\"documents\": 0, \"tokens\": %llu, \"shards\": [{\"file\": \"train-000000.shard\","
                        " \"tokens\": %llu, \"documents\": 0, \"bytes\": 144, \"xxh3\": \"%s\"}]},"
                        " \"val\": {\"documents\": 0, \"tokens\": 0, \"shards\": []}}}",
                        0, (unsigned long long)shard_tokens, (unsigned long long)n_tokens, (unsigned long long)n_tokens,
                        (unsigned long long)n_tokens, hex);
    path = xasprintf("%s/manifest.json", dir);
    write_file(path, m, strlen(m));
    free(path);
    free(m);
}

static void load_first_shard(const void *arg)
{
    (void)arg;
    ShardSet set;
    shardset_open(&set, dir);
    Shard s;
    shard_load(&s, &set, SPLIT_TRAIN, 0);
}

static void test_shards(void)
{
    big_shard_set(1ull << 31, 1ull << 31);
    refused(load_first_shard, NULL, "payload is 16 bytes, n_tokens (byte 24) x width makes 4294967296",
            "a shard claiming 2^31 tokens in 16 bytes is refused before 8 GB are allocated");
    big_shard_set(1ull << 40, 1ull << 40);
    refused(load_first_shard, NULL, "field 'shard_tokens' is 1099511627776, outside 1 to 2147483648",
            "a shard set claiming 2^40 tokens a shard is refused at its manifest");
    big_shard_set(1ull << 31, 1000);
    refused(load_first_shard, NULL, "field 'tokens' is 2147483648, above shard_tokens 1000",
            "a shard holding more than shard_tokens is refused at its manifest");
}

/* ---- model configs whose products overflow -------------------------------- */

static void config_of(const void *arg)
{
    cJSON *j = json_parse(arg, strlen(arg), NULL);
    if (!j) abort();
    Config c;
    config_from_json(&c, j, "config.json");
    config_validate(&c, "config.json");
    Model m;
    model_init(&m, &c, 1, 1);   /* reached only if the config was accepted */
}

static void test_configs(void)
{
    const char *base = "{\"vocab_size\": %s, \"d_model\": %s, \"n_layers\": 2, \"n_heads\": 4, \"n_kv_heads\": 2, \"head_dim\": %s,"
                       " \"n_experts\": 8, \"d_expert\": 16, \"top_k\": 1, \"max_seq_len\": %s}";
    struct { const char *v, *d, *hd, *seq, *want, *name; } cases[] = {
        {"1073741824", "1073741824", "8", "256", "field 'd_model' is 1073741824, above the limit",
         "d_model 2^30 is refused, not overflowed"},
        {"1073741824", "32", "1073741824", "256", "field 'head_dim' is 1073741824, above the limit", "head_dim 2^30"},
        {"512", "32", "8", "1073741824", "field 'max_seq_len' is 1073741824, above the limit", "max_seq_len 2^30"},
        {"1073741824", "65536", "8", "256", "the model would have", "vocab_size 2^30 x d_model 2^16: the parameter count"},
        {"4294967301", "32", "8", "256", "field 'vocab_size' is too large (4294967301", "vocab_size 2^32 + 5 is not read as 5"},
        {"512", "32", "8", "4294967297", "field 'max_seq_len' is too large", "max_seq_len 2^32 + 1 is not read as 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = xasprintf(base, cases[i].v, cases[i].d, cases[i].hd, cases[i].seq);
        refused(config_of, text, cases[i].want, cases[i].name);
        free(text);
    }
}

/* ---- reads with a cap, names inside a directory, checked products ------------ */

static void read_zero(const void *arg) { (void)arg; read_file("/dev/zero", 1 << 20, NULL); }
static void member(const void *arg) { free(dir_member(dir, arg, "the index")); }

static void test_base(void)
{
    refused(read_zero, NULL, "/dev/zero: larger than 1048576 bytes", "a read has a size cap (/dev/zero)");
    size_t len;
    char *path = xasprintf("%s/manifest.json", dir);
    char *text = read_file(path, 1 << 20, &len);
    ok(text && len > 0, "a file within the cap is read whole");
    free(text);
    refused(member, "..", "\"..\" is not a plain file name", "dir_member refuses ..");
    refused(member, "../x", "is not a plain file name", "dir_member refuses ../x");
    refused(member, "/etc/passwd", "is not a plain file name", "dir_member refuses an absolute path");
    refused(member, "", "is not a plain file name", "dir_member refuses an empty name");
    char *out = xasprintf("%s/out", dir), *in = xasprintf("%s/in", dir);
    if (symlink("/etc/passwd", out) != 0 || symlink("manifest.json", in) != 0) abort();
    refused(member, "out", "is a symbolic link out of", "dir_member refuses a link out of the directory");
    char *p = dir_member(dir, "in", "test");
    ok(!strcmp(p, in), "a link that stays inside is taken");
    free(p);
    free(out);
    free(in);
    free(path);
    uint64_t r = 7;
    ok(!mul_u64(1ull << 32, 1ull << 32, &r) && r == 7 && mul_u64(1ull << 31, 1ull << 32, &r) && r == 1ull << 63,
       "mul_u64 sees overflow");
}

int main(void)
{
    sg_init("test_hostile");
    snprintf(dir, sizeof dir, "/tmp/sigma-hostile.XXXXXX");
    if (!mkdtemp(dir)) abort();
    test_shards();
    test_configs();
    test_base();
    remove_tree(dir);
    return tap_done();
}
