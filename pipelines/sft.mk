# Supervised fine-tuning on real data, with a result: chat data made from what
# Debian ships, a small model pretrained on the same facts as plain text,
# fine-tuned with sigma-sft on questions about most of them, and both models
# asked the held-out questions with sigma-eval chat. Run it with `make sft`
# (pipelines/sft.md has a run's numbers and what they say).
#
#   make -f pipelines/sft.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out/sft] [THREADS=2] [DEVICE=auto]
#
# It installs nothing; it needs (scripts/deps installs them: `make deps`):
# wordnet-base (WordNet's glosses in /usr/share/wordnet), man-db (apropos)
# with the man pages on the machine and their index (the man-db package's
# trigger makes it; else run mandb), manpages, python3 and jq.
#
#   /usr/share/wordnet, apropos -l -s 1,8 . --pipelines/sft_data.py--> data/facts.jsonl,
#       data/train.jsonl, data/held-out.jsonl: WORDS words and COMMANDS commands
#       with their definitions; "What does the word 'X' mean?", "What does the
#       command `X` do?"; the first HELD of each kind (a fixed hash order) held out
#   data/facts.jsonl (every fact, held-out ones too, said PHRASINGS ways as plain
#       text) --sigma-tokenize train --chat--> tok.txt --encode, sigma-shard--> shards/
#   shards/ --sigma-pretrain--> base/    the base model: it has read every fact, no chat
#   base/ + data/train.jsonl --sigma-sft--> sft/    (data/held-out.jsonl its validation)
#   base/, sft/ + data/held-out.jsonl --sigma-eval chat--> base.json, sft.json (and .ex:
#       each question's loss and reply) --jq (sft-table.jq)--> table.md
#
# About 4 minutes on two quiet CPU cores, 10 on two shared ones (pipelines/sft.md,
# nearly all of it pretraining: 1000 steps of 4096 tokens); DEVICE=cuda puts
# the training and the evaluation on a GPU.

SIGMA_BIN  ?= $(CURDIR)/bin
OUT        ?= pipelines/out/sft
WORDNET    ?= /usr/share/wordnet
WORDS      ?= 600
COMMANDS   ?= 600
HELD       ?= 100
PHRASINGS  ?= 3
VOCAB      ?= 4096
STEPS      ?= 1000
SFT_EPOCHS ?= 6
MAX_TOKENS ?= 32
THREADS    ?= 2
DEVICE     ?= auto
PIPELINE   := sft
export PATH := $(SIGMA_BIN):$(PATH)

RUN := --threads $(THREADS) --device $(DEVICE)

.PHONY: sft
sft: $(OUT)/table.md
	@cat $<

# The man pages' NAME lines, whole (-l: not cut to the terminal's width).
$(OUT)/apropos.txt:
	@mkdir -p $(OUT)
	@command -v apropos >/dev/null || { echo "$(PIPELINE): no apropos: apt-get install man-db"; exit 1; }
	apropos -l -s 1,8 . > $@.tmp || true
	@test -s $@.tmp || { echo "$(PIPELINE): apropos finds no man page: install man-db and the man pages, then run mandb"; exit 1; }
	mv $@.tmp $@

$(OUT)/data/stats.json: $(OUT)/apropos.txt pipelines/sft_data.py
	@test -f $(WORDNET)/data.noun || { echo "$(PIPELINE): no WordNet in $(WORDNET): apt-get install wordnet-base"; exit 1; }
	python3 pipelines/sft_data.py --wordnet $(WORDNET) --apropos $< --words $(WORDS) --commands $(COMMANDS) \
	    --held $(HELD) --phrasings $(PHRASINGS) --out $(OUT)/data
$(OUT)/data/facts.jsonl $(OUT)/data/train.jsonl $(OUT)/data/held-out.jsonl: $(OUT)/data/stats.json

# The tokenizer reserves the chat tokens, so that the base model has them
# (untrained) and the fine-tuned one has the same vocabulary.
$(OUT)/tok.txt: $(OUT)/data/facts.jsonl
	sigma tokenize train -q --chat --jsonl --vocab-size $(VOCAB) -o $@ $<

# Every fact a document, none held out: the held-out questions ask about
# facts the base model has read.
$(OUT)/shards/manifest.json: $(OUT)/tok.txt $(OUT)/data/facts.jsonl
	sigma tokenize encode -q -t $(OUT)/tok.txt --jsonl $(OUT)/data/facts.jsonl > $(OUT)/facts.tok
	sigma shard -q --force -o $(OUT)/shards --val-fraction 0 $(OUT)/facts.tok
	sigma shard info $(OUT)/shards | jq -c '{documents, tokens}'

$(OUT)/base/latest: $(OUT)/shards/manifest.json
	rm -rf $(OUT)/base
	sigma pretrain -q --preset micro --data $(OUT)/shards --out $(OUT)/base --steps $(STEPS) --seq-len 128 \
	    --micro-batch 32 --batch-tokens 4096 --lr 5e-3 --warmup 20 --balance top1-lbl --balance-coef 0.01 \
	    --eval-every 0 --save-every $(STEPS) $(RUN) --metrics $(OUT)/base.jsonl

$(OUT)/sft/latest: $(OUT)/base/latest $(OUT)/data/train.jsonl $(OUT)/data/held-out.jsonl
	rm -rf $(OUT)/sft
	sigma sft --init $(OUT)/base -t $(OUT)/tok.txt --data $(OUT)/data/train.jsonl --val-data $(OUT)/data/held-out.jsonl \
	    --out $(OUT)/sft --epochs $(SFT_EPOCHS) --lr 1e-3 --micro-batch 32 --batch-tokens 4096 --eval-every 10 \
	    --eval-batches 100 $(RUN) --metrics $(OUT)/sft.jsonl

$(OUT)/%.json: $(OUT)/%/latest $(OUT)/data/held-out.jsonl
	sigma eval chat -q $(OUT)/$* -t $(OUT)/tok.txt --data $(OUT)/data/held-out.jsonl --max-tokens $(MAX_TOKENS) \
	    --per-example $(OUT)/$*.ex $(RUN) > $@.tmp
	mv $@.tmp $@

# What the base model knows: each held-out question as plain text, the way
# the facts' FAQ phrasing put it (the question, a newline; with PHRASINGS
# below 3 a form it has not read), continued greedily to its end-of-text by
# sigma-generate, on the CPU (it drops the last of the two newlines, as the
# one echo adds).
$(OUT)/plain.jsonl: $(OUT)/base/latest $(OUT)/data/held-out.jsonl
	jq -c '.messages' $(OUT)/data/held-out.jsonl | while IFS= read -r m; do \
	    reply=$$(printf '%s\n\n' "$$(echo "$$m" | jq -r '.[0].content')" | \
	        sigma generate -q $(OUT)/base -t $(OUT)/tok.txt -n $(MAX_TOKENS)); \
	    echo "$$m" | jq -c --arg r "$$reply" '{reference: .[1].content, reply: ($$r | sub("^\\s+"; "") | sub("\\s+$$"; ""))}'; \
	done > $@.tmp
	mv $@.tmp $@

$(OUT)/table.md: $(OUT)/base.json $(OUT)/sft.json $(OUT)/plain.jsonl pipelines/sft-table.jq
	jq -nr --slurpfile base $(OUT)/base.json --slurpfile sft $(OUT)/sft.json --slurpfile bex $(OUT)/base.ex \
	    --slurpfile sex $(OUT)/sft.ex --slurpfile plain $(OUT)/plain.jsonl --slurpfile q $(OUT)/data/held-out.jsonl \
	    --argjson held $(HELD) -f pipelines/sft-table.jq > $@.tmp
	mv $@.tmp $@

.SECONDARY:
