# The demo pipeline: real English text that Debian ships (the fortunes
# package: about 2.5 MB of quotations, jokes and verse) through every sigma
# tool that has landed, checked on the way. Run it with `make demo`.
#
#   make -f pipelines/demo.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out]
#
#   fortunes (pipelines/fortunes.mk) --> shards/
#   shards/ --sigma-pretrain (micro preset, CPU, about 2.5 minutes on two cores)--> run/
#            --sigma-eval--> held-out loss and expert load  --sigma-generate (sampled)--> text
#   the attributed fortunes --jq--> chat.jsonl ("What did Mark Twain say?" -> a quotation)
#   run/ + chat.jsonl --sigma-sft (--add-chat-tokens; its default 3 epochs, about 30 s)--> sft/  --sigma-generate --chat--> replies

SIGMA_BIN ?= $(CURDIR)/bin
OUT       ?= pipelines/out
VOCAB     ?= 4096
STEPS     ?= 400
PIPELINE  := demo
HERE      := $(dir $(lastword $(MAKEFILE_LIST)))
export PATH := $(SIGMA_BIN):$(PATH)


.PHONY: demo
demo: $(OUT)/run/latest $(OUT)/sft/latest
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
	@echo "demo: sigma-sft taught it to answer 'What did WHO say?' with a quotation ($$(wc -l < $(OUT)/chat.jsonl) conversations);"
	@echo "      the loss on the replies of held-out conversations as it trained:"
	@jq -r 'select(.type == "val") | "  after step \(.step + 1): \(.val_loss * 1000 | round / 1000) over \(.val_tokens) reply tokens"' \
	    $(OUT)/sft-metrics.jsonl
	@echo "demo: its replies (greedy with a repetition penalty of 1.1, in the chat template, up to <|im_end|>):"
	@for who in "Mark Twain" "Oscar Wilde" "Ambrose Bierce"; do \
	    echo "  What did $$who say?"; \
	    sigma generate -q $(OUT)/sft -t $(OUT)/sft/tokenizer --chat -p "What did $$who say?" -n 60 --repetition-penalty 1.1 | sed 's/^/    > /'; \
	done

# The report's recipe at toy scale: layers 0 and 1 start at top-4 and switch
# to top-1 at step 100 (progressive sparsification), with its top-1 LBL.
$(OUT)/run/latest: $(OUT)/shards/manifest.json
	rm -rf $(OUT)/run
	sigma pretrain --preset micro --data $(OUT)/shards --out $(OUT)/run --steps $(STEPS) --seq-len 128 \
	    --micro-batch 16 --batch-tokens 8192 --lr 5e-3 --warmup 20 --topk-schedule '0:4,4,1...; 100:1...' \
	    --balance top1-lbl --balance-coef 0.01 --eval-every 100 --eval-batches 8 --save-every 200 \
	    --metrics $(OUT)/metrics.jsonl

# Chat data from the fortunes that end in an attribution (fortune-chat.jq):
# the question names the author, the reply is the quotation; one in twenty
# held out by sigma-sft for its validation loss.
$(OUT)/chat.jsonl: $(OUT)/dedup.jsonl $(HERE)fortune-chat.jq
	jq -c -f $(HERE)fortune-chat.jq $< > $@.tmp && mv $@.tmp $@

# The demo's tokenizer was trained without the chat tokens: --add-chat-tokens
# grows the model by them (and keeps the grown tokenizer in sft/tokenizer).
$(OUT)/sft/latest: $(OUT)/run/latest $(OUT)/chat.jsonl
	rm -rf $(OUT)/sft
	sigma sft --init $(OUT)/run -t $(OUT)/tok.txt --add-chat-tokens --data $(OUT)/chat.jsonl --out $(OUT)/sft \
	    --seq-len 128 --micro-batch 16 --batch-tokens 8192 --lr 1e-3 --eval-every 20 --eval-batches 16 \
	    --metrics $(OUT)/sft-metrics.jsonl

include $(HERE)fortunes.mk
