# The demo pipeline: real English text that Debian ships (the fortunes
# package: about 2.5 MB of quotations, jokes and verse) through every sigma
# tool that has landed, checked on the way. Run it with `make demo`.
#
#   make -f pipelines/demo.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out]
#
#   fortunes --jq--> corpus.jsonl --sigma-tokenize train--> tok.txt
#            --sigma-tokenize encode--> corpus.tok --sigma-shard--> shards/

SIGMA_BIN ?= $(CURDIR)/bin
OUT       ?= pipelines/out
VOCAB     ?= 4096
export PATH := $(SIGMA_BIN):$(PATH)

FORTUNES := $(filter-out %.dat %.u8,$(wildcard /usr/share/games/fortunes/*))

.PHONY: demo
demo: $(OUT)/shards/manifest.json
	sigma shard verify $(OUT)/shards
	sigma shard info $(OUT)/shards | jq -c '{documents, tokens, train: .splits.train.tokens, val: .splits.val.tokens, compression_ratio}'
	sigma shard cat $(OUT)/shards | cmp - $(OUT)/corpus.tok && echo "demo: shard round trip exact"
	sigma shard cat --split val $(OUT)/shards | sigma tokenize decode -t $(OUT)/tok.txt | head -c 300; echo

# One JSON Lines record per fortune (they are separated by lines of "%").
$(OUT)/corpus.jsonl: $(FORTUNES)
	@test -n "$(FORTUNES)" || { echo "demo: no fortunes: apt-get install fortunes"; exit 1; }
	@mkdir -p $(OUT)
	cat $(FORTUNES) | jq -Rsc 'split("\n%\n")[] | select(test("[a-zA-Z]")) | {text: .}' > $@
	@echo "demo: $$(wc -l < $@) fortunes, $$(wc -c < $@) bytes of JSON Lines"

$(OUT)/tok.txt: $(OUT)/corpus.jsonl
	sigma tokenize train -q --jsonl --vocab-size $(VOCAB) --pattern gpt2 -o $@ $<
	sigma tokenize info -t $@ | jq -c '{vocab_size, pattern, fingerprint}'

$(OUT)/corpus.tok: $(OUT)/tok.txt $(OUT)/corpus.jsonl
	sigma tokenize encode -q -t $(OUT)/tok.txt --jsonl $(OUT)/corpus.jsonl > $@

$(OUT)/shards/manifest.json: $(OUT)/corpus.tok
	sigma shard -q --force -o $(OUT)/shards --shard-tokens 256k --val-fraction 0.02 $<
