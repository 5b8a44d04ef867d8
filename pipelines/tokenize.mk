# sigma-tokenize encode over many input shards at once, then one shard set
# from the many token streams. With dedup.mk before it: IN=OUT/kept of it.
#
#   make -j N -f pipelines/tokenize.mk IN=dedup/kept OUT=tok TOKENIZER=tok.txt
#        [PATTERN=o200k] [FLAGS='--field content'] [SHARD_FLAGS='--val-fraction 0.005'] [THREADS=1]
#
#   IN/NAME --sigma-tokenize encode--> OUT/streams/NAME.tok    one task per shard
#   OUT/streams/*.tok --sigma-shard--> OUT/shards/              one task
#
# Document order: the streams in the order of their names (byte order),
# each stream's documents in its input's order; sigma-shard numbers the
# documents so and draws the validation split from those numbers and its
# --seed (sigma-shard(1)). The shard set is the one that encoding all the
# inputs in one process, in that order, and sharding its stream would give.

IN          ?= in
OUT         ?= out
TOKENIZER   ?= tok.txt
PATTERN     ?=
THREADS     ?= 1
FLAGS       ?=
SHARD_FLAGS ?=
SIGMA_BIN   ?= $(CURDIR)/bin
TIME_LOG    ?=
TIMED        = $(if $(TIME_LOG),/usr/bin/time -a -o $(TIME_LOG) -f "$(1) %e s %M KB",)

INPUTS  := $(sort $(wildcard $(IN)/*.jsonl $(IN)/*.jsonl.zst))
NAMES   := $(notdir $(INPUTS))
STREAMS := $(NAMES:%=$(OUT)/streams/%.tok)

.PHONY: all
all: $(OUT)/shards/manifest.json
	@test -n "$(INPUTS)" || { echo "tokenize.mk: no *.jsonl or *.jsonl.zst in $(IN)"; exit 1; }

$(OUT)/streams:
	mkdir -p $@

$(OUT)/streams/%.tok: $(IN)/% $(TOKENIZER) | $(OUT)/streams
	$(call TIMED,encode $*) $(SIGMA_BIN)/sigma-tokenize encode -q -j $(THREADS) -t $(TOKENIZER) \
	    $(if $(PATTERN),--pattern $(PATTERN)) --jsonl $(FLAGS) -o $@ $<

$(OUT)/shards/manifest.json: $(STREAMS)
	$(call TIMED,shard all) $(SIGMA_BIN)/sigma-shard -q --force -o $(OUT)/shards $(SHARD_FLAGS) $(STREAMS)

.SECONDARY:
