# make dedup-demo: about 2 GB of real text through sigma-dedup's stages and
# per-shard tokenization with make -j2, beside the same work in one process,
# with every task's time and peak memory. Not a test: it takes minutes and
# gigabytes of disk (about 5 GB). Its report is
# bench/out/dedup-demo/report.md; bench/dedup.md keeps a run's. The corpus
# is made once; the rest again when the tools change.
#
#   make -f pipelines/dedup-demo.mk SIGMA_BIN=$PWD/bin [OUT=bench/out/dedup-demo]
#        [MB=2000] [SHARDS=16] [JOBS=2] [BOUND_MB=512]
#
#   bench/dedup_demo_corpus.py --> OUT/in/part-NNN.jsonl.zst   (Debian's documentation and
#                                  man pages, repeated with changes; made once)
#   make -j JOBS -f pipelines/dedup.mk     --> OUT/dedup/kept/part-NNN.jsonl.zst
#   sigma-dedup (one process) on OUT/in    --> compared with the kept shards, byte for byte
#   sigma-tokenize train on a sample       --> OUT/tok.txt
#   make -j JOBS -f pipelines/tokenize.mk  --> OUT/tok/shards/
#   sigma-tokenize encode | sigma-shard    --> OUT/one-shards/, compared with OUT/tok/shards/

SHELL     := /bin/bash
OUT       ?= bench/out/dedup-demo
MB        ?= 2000
SHARDS    ?= 16
JOBS      ?= 2
BOUND_MB  ?= 512
SIGMA_BIN ?= $(CURDIR)/bin
HERE      := $(dir $(lastword $(MAKEFILE_LIST)))
ROOT      := $(abspath $(HERE)..)
export PATH := $(SIGMA_BIN):$(PATH)
TIME      = /usr/bin/time -f "$(1) %e s %M KB" -a -o $(abspath $(OUT))/times.log
LOAD      = echo "$(1) $$(cut -d' ' -f1-3 /proc/loadavg)" >> $(OUT)/load.log

.PHONY: all
all: $(OUT)/report.md
	@cat $<

$(OUT)/in/.done:
	@mkdir -p $(OUT)
	python3 $(ROOT)/bench/dedup_demo_corpus.py $(OUT)/in $(MB) $(SHARDS) | tee $(OUT)/corpus.txt
	touch $@

# the stages, JOBS at a time
$(OUT)/dedup.done: $(OUT)/in/.done $(SIGMA_BIN)/sigma-dedup
	rm -rf $(OUT)/dedup $(OUT)/times.log $(OUT)/load.log
	$(call LOAD,dedup-start)
	$(call TIME,make-dedup all) $(MAKE) --no-print-directory -j$(JOBS) -f $(ROOT)/pipelines/dedup.mk \
	    IN=$(OUT)/in OUT=$(OUT)/dedup SIGMA_BIN=$(SIGMA_BIN) TIME_LOG=$(abspath $(OUT))/times.log
	$(call LOAD,dedup-end)
	touch $@

# the same in one process, JOBS threads; its output against the kept shards
$(OUT)/one.done: $(OUT)/dedup.done
	$(call LOAD,one-start)
	set -o pipefail; $(call TIME,one-process all) sigma-dedup -q -j $(JOBS) --stats $(OUT)/one.json \
	    $$(LC_ALL=C ls $(OUT)/in/*.jsonl.zst) | cmp - <(zstdcat $$(LC_ALL=C ls $(OUT)/dedup/kept/*.jsonl.zst)) \
	    && echo identical > $(OUT)/one-vs-stages.txt || echo DIFFERENT > $(OUT)/one-vs-stages.txt
	$(call LOAD,one-end)
	touch $@

# a tokenizer from a sample of the kept text, then the streams and one shard set
$(OUT)/tok.txt: $(OUT)/dedup.done
	zstdcat $(OUT)/dedup/kept/part-000.jsonl.zst | head -n 50000 > $(OUT)/sample.jsonl
	sigma-tokenize train -q --jsonl --vocab-size 8192 --pattern o200k -o $@ $(OUT)/sample.jsonl

$(OUT)/tok.done: $(OUT)/tok.txt $(OUT)/one.done $(SIGMA_BIN)/sigma-tokenize $(SIGMA_BIN)/sigma-shard
	rm -rf $(OUT)/tok
	$(call LOAD,tokenize-start)
	$(call TIME,make-tokenize all) $(MAKE) --no-print-directory -j$(JOBS) -f $(ROOT)/pipelines/tokenize.mk \
	    IN=$(OUT)/dedup/kept OUT=$(OUT)/tok TOKENIZER=$(OUT)/tok.txt SIGMA_BIN=$(SIGMA_BIN) \
	    SHARD_FLAGS="--val-fraction 0.005" TIME_LOG=$(abspath $(OUT))/times.log
	$(call LOAD,tokenize-end)
	rm -rf $(OUT)/one-shards
	set -o pipefail; $(call TIME,one-tokenize all) sigma-tokenize encode -q -j $(JOBS) -t $(OUT)/tok.txt --jsonl \
	    $$(LC_ALL=C ls $(OUT)/dedup/kept/*.jsonl.zst) | sigma-shard -q -o $(OUT)/one-shards --val-fraction 0.005
	$(call LOAD,one-tokenize-end)
	cmp <(jq -c .splits $(OUT)/tok/shards/manifest.json) <(jq -c .splits $(OUT)/one-shards/manifest.json) \
	    && echo identical > $(OUT)/tok-vs-one.txt || echo DIFFERENT > $(OUT)/tok-vs-one.txt
	touch $@

$(OUT)/report.md: $(OUT)/tok.done
	python3 $(ROOT)/bench/dedup_demo_report.py $(OUT) $(BOUND_MB) > $@
