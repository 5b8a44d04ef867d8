# The demo pipeline: real text -> token stream -> shard set, checked and read
# back. Run it with `make demo` (from the repository root). Later stages
# (dedup, tokenizer training, pretraining, sampling) join as they land.
#
#   make -f pipelines/demo.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out]

SIGMA_BIN ?= $(CURDIR)/bin
OUT       ?= pipelines/out
export PATH := $(SIGMA_BIN):$(CURDIR)/build/tests:$(PATH)

# Real English text that every Debian system has: the license texts.
CORPUS_SRC := $(wildcard /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 \
                         /usr/share/common-licenses/MPL-2.0 /usr/share/common-licenses/Artistic)

.PHONY: demo
demo: $(OUT)/shards/manifest.json
	sigma shard verify $(OUT)/shards
	sigma shard info $(OUT)/shards | jq -c '{documents, tokens, train: .splits.train.tokens, val: .splits.val.tokens, compression_ratio}'
	sigma shard cat $(OUT)/shards | cmp - $(OUT)/corpus.tok && echo "demo: round trip exact"

$(OUT)/corpus.txt: $(CORPUS_SRC)
	@mkdir -p $(OUT)
	cat $^ > $@

# Until sigma-tokenize lands: each byte is a token, a paragraph a document.
$(OUT)/corpus.tok: $(OUT)/corpus.txt
	tokgen bytes $< > $@

$(OUT)/shards/manifest.json: $(OUT)/corpus.tok
	sigma shard --force -o $(OUT)/shards --shard-tokens 64k --val-fraction 0.05 $<
