# The Sigma-MoE-Tiny report's load-balance study at toy scale: the same
# small model trained on Debian's fortunes under each of the report's
# recipes, with a sweep of each balance kind's coefficient; each run's
# held-out loss beside the balance it reached, the table and the pictures.
# Run it with `make balance-study` (pipelines/balance-study.md has a run's
# results and what they say).
#
#   make -f pipelines/balance-study.mk SIGMA_BIN=$PWD/bin [OUT=pipelines/out/balance] [SCALE=1] [JOBS=2]
#
#   fortunes (pipelines/fortunes.mk) --> shards/
#   shards/ --sigma-pretrain, once per recipe--> runs/NAME/, runs/NAME.jsonl (metrics)
#           --sigma-eval loss--> runs/NAME.eval.json (held-out loss, each layer's load)
#           --jq--> summary.jsonl, table.md   --sigma-plot--> *.png, *.svg
#
# SCALE multiplies the steps (200 of 4096 tokens at 1: 15 to 20 minutes on
# two CPU cores, the runs two at a time on one thread each); the model stays
# the micro preset (4 layers, 16 experts of 64, d 128). DEVICE=cuda puts the
# runs on a GPU.

SIGMA_BIN ?= $(CURDIR)/bin
OUT       ?= pipelines/out/balance
VOCAB     ?= 4096
SCALE     ?= 1
THREADS   ?= 1
SEQS      ?= 32
DEVICE    ?= auto
PIPELINE  := balance-study
export PATH := $(SIGMA_BIN):$(PATH)

STEPS  := $(shell awk 'BEGIN { s = int(200 * $(SCALE) + 0.5); print s < 6 ? 6 : s }')
# progressive sparsification's switch to top-1 (and the validation interval);
# the last tenth of the steps, "the end of training" in the table
SWITCH := $(shell echo $$(( $(STEPS) / 3 )))
TAIL   := $(shell echo $$(( ($(STEPS) + 9) / 10 )))

# The recipes: each a name and the options that make it. The report's
# Figure 2a (top-1 against top-k with the standard LBL at its usual a =
# 1e-3), Figure 3 (the aux-loss-free bias), Figure 4 and its released recipe
# (progressive sparsification; the top-1 LBL), and the sweep of each kind's
# coefficient (the bias's rate is its coefficient).
RECIPES := none lbl-1e-3 lbl-1e-2 lbl-1e-1 top4-lbl-1e-3 bias-1e-3 bias-1e-2 \
           top1-lbl-1e-3 top1-lbl-1e-2 top1-lbl-1e-1 prog-lbl-1e-3 prog-top1-lbl-1e-2
args_none          := --balance none
args_lbl-1e-3      := --balance lbl --balance-coef 1e-3
args_lbl-1e-2      := --balance lbl --balance-coef 1e-2
args_lbl-1e-1      := --balance lbl --balance-coef 1e-1
args_top4-lbl-1e-3 := --topk-schedule '0:4...' --balance lbl --balance-coef 1e-3
args_bias-1e-3     := --balance bias --bias-rate 1e-3
args_bias-1e-2     := --balance bias --bias-rate 1e-2
args_top1-lbl-1e-3 := --balance top1-lbl --balance-coef 1e-3
args_top1-lbl-1e-2 := --balance top1-lbl --balance-coef 1e-2
args_top1-lbl-1e-1 := --balance top1-lbl --balance-coef 1e-1
args_prog-lbl-1e-3 := --topk-schedule '0:4,4,1...; $(SWITCH):1...' --balance lbl --balance-coef 1e-3
args_prog-top1-lbl-1e-2 := --topk-schedule '0:4,4,1...; $(SWITCH):1...' --balance top1-lbl --balance-coef 1e-2

RUNS := $(RECIPES:%=$(OUT)/runs/%.row.json)

# The pictures: sigma-plot's options and the recipes each draws; the
# per-step load is noisy (256 tokens an expert at an even share), so the
# load's lines are means of 5 steps.
FIGURES := fig2a fig3 fig4 sweep-lbl sweep-top1-lbl layer0 heatmap loss val-loss
figopts_fig2a          := --load --smooth 5 --names 'top-1 LBL a=1e-3,top-4 LBL a=1e-3' --title 'the standard LBL at top-1 and top-4 (Figure 2a)'
figruns_fig2a          := lbl-1e-3 top4-lbl-1e-3
figopts_fig3           := --load --smooth 5 --title 'the aux-loss-free bias at two rates (Figure 3)'
figruns_fig3           := bias-1e-3 bias-1e-2
figopts_fig4           := --load --smooth 5 --title 'progressive sparsification and the top-1 LBL (Figure 4)'
figruns_fig4           := prog-lbl-1e-3 top1-lbl-1e-2 prog-top1-lbl-1e-2
figopts_sweep-lbl      := --load --smooth 5 --title 'the standard LBL: a = 1e-3, 1e-2, 1e-1'
figruns_sweep-lbl      := lbl-1e-3 lbl-1e-2 lbl-1e-1
figopts_sweep-top1-lbl := --load --smooth 5 --title 'the top-1 LBL: a = 1e-3, 1e-2, 1e-1'
figruns_sweep-top1-lbl := top1-lbl-1e-3 top1-lbl-1e-2 top1-lbl-1e-1
figopts_layer0         := -y 'load_max[0]' --smooth 10 --title 'layer 0: the busiest expert, mean of 10 steps'
figruns_layer0         := none lbl-1e-3 top4-lbl-1e-3 bias-1e-3 top1-lbl-1e-2 prog-lbl-1e-3
figopts_heatmap        := --heatmap --title 'the busiest expert of each layer'
figruns_heatmap        := none lbl-1e-3 bias-1e-3 top1-lbl-1e-2
figopts_loss           := -y loss --smooth 10 --title 'training loss, mean of 10 steps'
figruns_loss           := none lbl-1e-3 top4-lbl-1e-3 bias-1e-3 top1-lbl-1e-2 prog-lbl-1e-3
figopts_val-loss       := -y val_loss --title 'validation loss'
figruns_val-loss       := $(RECIPES)

.PHONY: balance-study table pictures
balance-study: table pictures
	@cat $(OUT)/table.md
	@echo "$(PIPELINE): the pictures: $(FIGURES:%=$(OUT)/%.png) (and .svg)"

table: $(OUT)/table.md
pictures: $(FIGURES:%=$(OUT)/%.png)

$(OUT)/%.png: $(RUNS)
	sigma plot -o $@ $(figopts_$*) $(figruns_$*:%=$(OUT)/runs/%.jsonl)
	sigma plot -o $(@:.png=.svg) $(figopts_$*) $(figruns_$*:%=$(OUT)/runs/%.jsonl)

# Every run: one step is one micro-batch of SEQS sequences of 128 tokens
# (4096 tokens), so lbl's counts are the step's (as lbl-global's would be).
$(OUT)/runs/%/latest: $(OUT)/shards/manifest.json
	@mkdir -p $(OUT)/runs
	rm -rf $(OUT)/runs/$*
	sigma pretrain -q --preset micro --data $(OUT)/shards --out $(OUT)/runs/$* --steps $(STEPS) --seq-len 128 \
	    --micro-batch $(SEQS) --batch-tokens $$(( $(SEQS) * 128 )) --lr 5e-3 --warmup 20 --eval-every $(SWITCH) --eval-batches 8 \
	    --save-every $(STEPS) --threads $(THREADS) --device $(DEVICE) --metrics $(OUT)/runs/$*.jsonl $(args_$*)

# The held-out loss and each layer's load over the whole validation split,
# from the final checkpoint.
$(OUT)/runs/%.eval.json: $(OUT)/runs/%/latest
	sigma eval loss -q $(OUT)/runs/$* -t $(OUT)/tok.txt --data $(OUT)/shards --threads $(THREADS) --device $(DEVICE) > $@.tmp
	mv $@.tmp $@

# A row of the table: the held-out numbers (sigma-eval), and from the
# training metrics the worst layer's deviations averaged over the last
# tenth of the steps.
$(OUT)/runs/%.row.json: $(OUT)/runs/%.eval.json
	jq -c --arg recipe $* --arg args "$(args_$*)" --argjson tail $(TAIL) --slurpfile m $(OUT)/runs/$*.jsonl \
	    -f pipelines/balance-row.jq $< > $@.tmp
	mv $@.tmp $@

$(OUT)/summary.jsonl: $(RUNS)
	cat $^ > $@

$(OUT)/table.md: $(OUT)/summary.jsonl
	jq -rs -f pipelines/balance-table.jq $< > $@.tmp
	mv $@.tmp $@

# the runs, their evaluations and rows are kept, not removed as intermediates
.SECONDARY:

include $(dir $(lastword $(MAKEFILE_LIST)))fortunes.mk
