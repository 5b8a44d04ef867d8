# Debian's fortunes (the fortunes package: about 2.5 MB of quotations, jokes
# and verse) as a shard set, for the pipelines that train on real text
# (demo.mk, balance-study.mk), which include this file after their first
# target. They set OUT (the directory), VOCAB (the tokenizer's size) and
# PIPELINE (the name its messages begin with).
#
#   fortunes --jq--> corpus.jsonl --sigma-dedup--> dedup.jsonl --sigma-tokenize train--> tok.txt
#            --sigma-tokenize encode--> corpus.tok --sigma-shard--> shards/

FORTUNES ?= $(filter-out %.dat %.u8,$(wildcard /usr/share/games/fortunes/*))

# One JSON Lines record per fortune (they are separated by lines of "%").
$(OUT)/corpus.jsonl: $(FORTUNES)
	@test -n "$(FORTUNES)" || { echo "$(PIPELINE): no fortunes: apt-get install fortunes"; exit 1; }
	@mkdir -p $(OUT)
	cat $(FORTUNES) | jq -Rsc 'split("\n%\n")[] | select(test("[a-zA-Z]")) | {text: .}' > $@
	@echo "$(PIPELINE): $$(wc -l < $@) fortunes, $$(wc -c < $@) bytes of JSON Lines"

# The fortune files repeat each other (cookie holds many of the others).
$(OUT)/dedup.jsonl: $(OUT)/corpus.jsonl
	sigma dedup -q --jsonl --field text --stats $(OUT)/dedup-stats.json $< > $@.tmp && mv $@.tmp $@
	@jq -c '{documents_in: .documents_in, exact_removed: .exact_removed, near_removed: .near_removed, documents_out: .documents_out}' $(OUT)/dedup-stats.json 2>/dev/null || cat $(OUT)/dedup-stats.json

$(OUT)/tok.txt: $(OUT)/dedup.jsonl
	sigma tokenize train -q --jsonl --vocab-size $(VOCAB) --pattern gpt2 -o $@ $<
	sigma tokenize info -t $@ | jq -c '{vocab_size, pattern, fingerprint}'

$(OUT)/corpus.tok: $(OUT)/tok.txt $(OUT)/dedup.jsonl
	sigma tokenize encode -q -t $(OUT)/tok.txt --jsonl $(OUT)/dedup.jsonl > $@

$(OUT)/shards/manifest.json: $(OUT)/corpus.tok
	sigma shard -q --force -o $(OUT)/shards --shard-tokens 256k --val-fraction 0.02 $<
	sigma shard verify $(OUT)/shards
	sigma shard cat $(OUT)/shards | cmp - $(OUT)/corpus.tok && echo "$(PIPELINE): shard round trip exact"
	sigma shard info $(OUT)/shards | jq -c '{documents, tokens, train: .splits.train.tokens, val: .splits.val.tokens}'
