/* A shard file (shard_load, then the set read back in order, as sigma-shard
 * verify and cat do), with a manifest made to agree with it. Input byte 0
 * chooses the mode: odd, the header, index and payload checksums are set
 * right first so that the fuzzer reaches what lies behind them (the
 * decompression, the index, the order of documents); even, the bytes go
 * in as they are. */
#include "common.h"
#include "base/base.h"
#include "data/shard.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void read_set(void *arg)
{
    (void)arg;
    ShardSet set;
    shardset_open(&set, fz_dir());
    SetReader *r = setreader_open(&set, -1);
    uint32_t buf[64];
    int end;
    while (setreader_read(r, buf, 64, &end) || end) {}
    setreader_close(r);
    shardset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int fix = data[0] & 1;
    size--;
    uint8_t *f = malloc(size ? size : 1);
    memcpy(f, data + 1, size);
    uint64_t tokens = 0, docs = 0;
    uint32_t width = 2, vocab = 300, comp = 0;
    if (size >= 128) {
        tokens = get64(f + 24);
        docs = get64(f + 32);
        width = get32(f + 12);
        vocab = get32(f + 16);
        comp = get32(f + 20);
        uint64_t n_index = docs <= (size - 128) / 16 ? docs * 16 : 0, payload = get64(f + 40);
        if (fix && n_index + payload + 128 == size) {
            uint64_t h = XXH3_64bits(f + 128, n_index);
            memcpy(f + 56, &h, 8);
            h = XXH3_64bits(f + 128 + n_index, payload);
            memcpy(f + 64, &h, 8);
            if (comp == 0) memcpy(f + 48, &h, 8);
        }
        if (fix) {
            uint64_t h = XXH3_64bits(f, 104);
            memcpy(f + 104, &h, 8);
        }
    }
    free(fz_file("train-000000.shard", f, size));
    char hex[17], fp[33];
    hex64(hex, XXH3_64bits(f, size));
    for (int i = 0; i < 16; i++) snprintf(fp + 2 * i, 3, "%02x", size >= 104 ? f[88 + i] : 0);
    char *m = xasprintf("{\"format\": \"sigma-shards\", \"version\": 1, \"tokenizer\": {\"fingerprint\": \"%s\", \"vocab_size\": %u},"
                        " \"token_width\": %u, \"compression\": \"%s\", \"level\": %d, \"shard_tokens\": %llu,"
                        " \"split_rule\": {\"seed\": \"0000000000000000\", \"val_fraction\": 0}, \"documents\": %llu, \"tokens\": %llu,"
                        " \"splits\": {\"train\": {\"documents\": %llu, \"tokens\": %llu, \"shards\": [{\"file\": \"train-000000.shard\","
                        " \"tokens\": %llu, \"documents\": %llu, \"bytes\": %zu, \"xxh3\": \"%s\"}]},"
                        " \"val\": {\"documents\": 0, \"tokens\": 0, \"shards\": []}}}",
                        fp, vocab, width, comp ? "zstd" : "none", comp ? 3 : 0, (unsigned long long)(tokens ? tokens : 1),
                        (unsigned long long)docs, (unsigned long long)tokens, (unsigned long long)docs, (unsigned long long)tokens,
                        (unsigned long long)tokens, (unsigned long long)docs, size, hex);
    free(fz_file("manifest.json", (const uint8_t *)m, strlen(m)));
    free(m);
    free(f);
    fz_run(read_set, NULL);
    return 0;
}
