# sigma-dedup's stages over a directory of input shards (JSON Lines, .jsonl
# or .jsonl.zst), as make runs them: every stage a file, as many at once as
# -j allows, and a rerun after a crash does only what is missing (each
# output appears only when complete). sigma-dedup(1) shows the same as a
# Slurm array and with GNU parallel.
#
#   make -j N -f pipelines/dedup.mk IN=shards OUT=dedup [MODE=both] [BANDS=14]
#        [ROWS=8] [PARTITIONS=16] [FLAGS='--field content --skip-bad'] [THREADS=1]
#        [GLOB='*.jsonl *.jsonl.zst'] [REPORT=1]
#
#   IN/NAME --signatures--> OUT/sig/NAME.sig         one task per shard
#   OUT/sig/* --exact--> OUT/exact/P.exact            one per hash partition
#   OUT/sig/* --buckets--> OUT/buckets/B.pairs        one per band
#   all of them --clusters--> OUT/removal.list, OUT/stats.json
#   IN/NAME + OUT/removal.list --filter--> OUT/kept/NAME   one per shard
#                      (REPORT=1: and OUT/removed/NAME, as sigma-dedup --removed)
#
# The shards are taken in the order of their names (byte order), the order
# in which `sigma-dedup $(ls IN/*)` in one process would read them, and
# OUT/kept/ holds what it would write, cut at the same places.

IN         ?= in
OUT        ?= out
MODE       ?= both
BANDS      ?= 14
ROWS       ?= 8
PARTITIONS ?= 16
THREADS    ?= 1
FLAGS      ?=
GLOB       ?= *.jsonl *.jsonl.zst
REPORT     ?=
SIGMA_BIN  ?= $(CURDIR)/bin
DEDUP      ?= $(SIGMA_BIN)/sigma-dedup
# each stage's time and peak memory, when TIME names a log (make dedup-demo)
TIME_LOG   ?=
TIMED      = $(if $(TIME_LOG),/usr/bin/time -a -o $(TIME_LOG) -f "$(1) %e s %M KB",)

INPUTS   := $(sort $(wildcard $(addprefix $(IN)/,$(GLOB))))
NAMES    := $(notdir $(INPUTS))
SIGS     := $(NAMES:%=$(OUT)/sig/%.sig)
count     = $(shell seq 0 $$(($(1) - 1)))
EXACTS   := $(if $(filter near,$(MODE)),,$(foreach p,$(call count,$(PARTITIONS)),$(OUT)/exact/$(p).exact))
PAIRS    := $(if $(filter exact,$(MODE)),,$(foreach b,$(call count,$(BANDS)),$(OUT)/buckets/$(b).pairs))
KEPT     := $(NAMES:%=$(OUT)/kept/%)
PARAMS   := --mode $(MODE) --bands $(BANDS) --rows $(ROWS) --partitions $(PARTITIONS) $(FLAGS)

.PHONY: all
all: $(KEPT)
	@test -n "$(INPUTS)" || { echo "dedup.mk: no $(GLOB) in $(IN)"; exit 1; }
	@jq -c '{shards, documents_in, documents_out, exact_removed, near_removed, bad_skipped}' $(OUT)/stats.json

$(OUT)/sig $(OUT)/exact $(OUT)/buckets $(OUT)/kept $(OUT)/removed:
	mkdir -p $@

$(OUT)/sig/%.sig: $(IN)/% | $(OUT)/sig
	$(call TIMED,signatures $*) $(DEDUP) signatures -q -j $(THREADS) $(PARAMS) -o $@ $<

$(OUT)/exact/%.exact: $(SIGS) | $(OUT)/exact
	$(call TIMED,exact $*) $(DEDUP) exact -q --partition $* -o $@ $(SIGS)

$(OUT)/buckets/%.pairs: $(SIGS) | $(OUT)/buckets
	$(call TIMED,buckets $*) $(DEDUP) buckets -q --band $* -o $@ $(SIGS)

$(OUT)/removal.list: $(EXACTS) $(PAIRS)
	$(call TIMED,clusters all) $(DEDUP) clusters -q --stats $(OUT)/stats.json -o $@ $(SIGS) $(EXACTS) $(PAIRS)

$(OUT)/kept/%: $(IN)/% $(OUT)/removal.list | $(OUT)/kept $(if $(REPORT),$(OUT)/removed)
	$(call TIMED,filter $*) $(DEDUP) filter -q --removal $(OUT)/removal.list $(if $(REPORT),--removed $(OUT)/removed/$*) \
	    -o $@ $<

.DELETE_ON_ERROR:
.SECONDARY:
