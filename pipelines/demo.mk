# The demo pipeline: real English text that Debian ships (the fortunes
# package: about 2.5 MB of quotations, jokes and verse) through every sigma
# tool that has landed, checked on the way. Run it with `make demo`.
#
#   make -f pipelines/demo.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out]
#
#   fortunes --jq--> corpus.jsonl --sigma-dedup--> dedup.jsonl --sigma-tokenize train--> tok.txt
#            --sigma-tokenize encode--> corpus.tok --sigma-shard--> shards/
#            --sigma-pretrain (micro preset, CPU, about 2.5 minutes on two cores)--> run/
#            --sigma-eval--> held-out loss and expert load  --sigma-generate (sampled)--> text

SIGMA_BIN ?= $(CURDIR)/bin
OUT       ?= pipelines/out
VOCAB     ?= 4096
STEPS     ?= 400
export PATH := $(SIGMA_BIN):$(PATH)

FORTUNES := $(filter-out %.dat %.u8,$(wildcard /usr/share/games/fortunes/*))

.PHONY: demo
demo: $(OUT)/run/latest
	@echo "demo: the training loss every 40 steps, and the validation loss where measured:"
	@jq -r 'select(.type == "train" and (.step + 1) % 40 == 0) | "  step \(.step + 1)\t\(.loss * 1000 | round / 1000)\t" + ("#" * (.loss * 8 | floor))' \
	    $(OUT)/metrics.jsonl
	@jq -r 'select(.type == "val") | "  validation after step \(.step + 1): \(.val_loss * 1000 | round / 1000)"' $(OUT)/metrics.jsonl
	@echo "demo: sigma-eval on the held-out split: the loss, bits per byte, and each layer's load (0 = an even share):"
	@sigma eval loss -q $(OUT)/run -t $(OUT)/tok.txt --data $(OUT)/shards | jq -r '"  loss \(.loss * 1000 | round / 1000) nats a token, \(.bits_per_byte * 1000 | round / 1000) bits a byte over \(.tokens) tokens", (.load[] | "  layer \(.layer): busiest \(.load_max * 100 | round)%, idlest \(.load_min * 100 | round)%, \(.idle_experts) idle")'
	@echo "demo: three samples (temperature 0.8, among the 40 likeliest tokens, seeds 1 to 3), each after 'The meaning of life is':"
	@for seed in 1 2 3; do \
	    sigma generate -q $(OUT)/run -t $(OUT)/tok.txt -p "The meaning of life is" -n 60 --temperature 0.8 --top-k 40 \
	        --seed $$seed | sed 's/^/    | /'; \
	done

# The report's recipe at toy scale: layers 0 and 1 start at top-4 and switch
# to top-1 at step 100 (progressive sparsification), with its top-1 LBL.
$(OUT)/run/latest: $(OUT)/shards/manifest.json
	rm -rf $(OUT)/run
	sigma pretrain --preset micro --data $(OUT)/shards --out $(OUT)/run --steps $(STEPS) --seq-len 128 \
	    --micro-batch 16 --batch-tokens 8192 --lr 5e-3 --warmup 20 --topk-schedule '0:4,4,1...; 100:1...' \
	    --balance top1-lbl --balance-coef 0.01 --eval-every 100 --eval-batches 8 --save-every 200 \
	    --metrics $(OUT)/metrics.jsonl

# One JSON Lines record per fortune (they are separated by lines of "%").
$(OUT)/corpus.jsonl: $(FORTUNES)
	@test -n "$(FORTUNES)" || { echo "demo: no fortunes: apt-get install fortunes"; exit 1; }
	@mkdir -p $(OUT)
	cat $(FORTUNES) | jq -Rsc 'split("\n%\n")[] | select(test("[a-zA-Z]")) | {text: .}' > $@
	@echo "demo: $$(wc -l < $@) fortunes, $$(wc -c < $@) bytes of JSON Lines"

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
	sigma shard cat $(OUT)/shards | cmp - $(OUT)/corpus.tok && echo "demo: shard round trip exact"
	sigma shard info $(OUT)/shards | jq -c '{documents, tokens, train: .splits.train.tokens, val: .splits.val.tokens}'
