#!/bin/sh
# sigma-pretrain: parameter counts, a falling loss on real text, exact resume
# after SIGKILL and SIGTERM, the top-k switch, balance losses, lbl-global
# over accumulation, guards, refusal of mismatched or corrupt checkpoints.
. "$(dirname "$0")/lib.sh"

# ---- dry runs: the presets' sizes --------------------------------------------------------
sigma-pretrain --preset sigma-moe-tiny --dry-run >"$T/tiny" 2>&1
total=$(sed -n 's/^parameters: \([0-9]*\) total, \([0-9]*\) active.*/\1/p' "$T/tiny")
active=$(sed -n 's/^parameters: \([0-9]*\) total, \([0-9]*\) active.*/\2/p' "$T/tiny")
ok "sigma-moe-tiny: about 20B total ($total)" test "${total:-0}" -gt 18000000000 -a "${total:-0}" -lt 22000000000
ok "sigma-moe-tiny: about 0.5B active ($active)" test "${active:-0}" -gt 400000000 -a "${active:-0}" -lt 650000000
ok "the dry run prints the memory a run needs" grep -q "^memory: .* GiB" "$T/tiny"
sigma-pretrain --preset sigma-moe-tiny --dry-run --nproc 8 --micro-batch 1 --seq-len 4096 --batch-tokens 32768 >"$T/dp8" 2>&1
sigma-pretrain --preset sigma-moe-tiny --dry-run --nproc 8 --ep 8 --micro-batch 1 --seq-len 4096 --batch-tokens 32768 >"$T/ep8" 2>&1
ok "sigma-moe-tiny on 8 GPUs by data parallelism alone does not fit 80 GB" grep -q "does not fit an 80 GB device" "$T/dp8"
ok "  with --ep 8 it does" grep -q "^a GPU per rank: .*: fits an 80 GB device" "$T/ep8"
ok "  each rank holding 3.3B of the 20B parameters" grep -q "holds 3.332B parameters" "$T/ep8"
ok "  and the plan gives the all-to-all's volume and time" grep -q "^all-to-all: .* GB sent per rank .* ms over NVLink" "$T/ep8"
fails_with "--ep that does not divide --nproc: a usage error" 2 "must be groups of 3" \
    sigma-pretrain --preset sigma-moe-tiny --dry-run --nproc 8 --ep 3
for p in nano micro test; do ok "dry run of $p" sigma-pretrain --preset $p --dry-run; done
fails_with "an unknown preset" 2 "unknown preset" sigma-pretrain --preset huge --dry-run

# ---- data: real text as bytes ---------------------------------------------------------------
if [ -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ]; then text="$SIGMA_DATA/corpora/tinyshakespeare.txt"
else text=/usr/share/common-licenses/GPL-3; fi
tokgen bytes "$text" >"$T/text.tok"
sigma-shard -q -o "$T/shards" --shard-tokens 100k --val-fraction 0.02 "$T/text.tok"
train() {   # run-dir metrics [options]; `train_bg` the same in the background, $! its pid
    out=$1 met=$2; shift 2
    sigma-pretrain -q --preset test --data "$T/shards" --out "$out" --metrics "$met" --seq-len 32 --micro-batch 4 \
        --batch-tokens 256 --steps 30 --save-every 5 --eval-every 10 --eval-batches 2 --lr 1e-2 --warmup 3 "$@"
}
train_bg() {
    out=$1 met=$2; shift 2
    sigma-pretrain -q --preset test --data "$T/shards" --out "$out" --metrics "$met" --seq-len 32 --micro-batch 4 \
        --batch-tokens 256 --steps 30 --save-every 5 --eval-every 10 --eval-batches 2 --lr 1e-2 --warmup 3 "$@" &
}
losses() { jq -c 'select(.type == "train") | [.step, .loss, .grad_norm]' "$1"; }

ok "a short run" train "$T/a" "$T/a.jsonl"
first=$(losses "$T/a.jsonl" | head -n 5 | jq -s 'map(.[1]) | add / length')
last=$(losses "$T/a.jsonl" | tail -n 5 | jq -s 'map(.[1]) | add / length')
ok "the loss falls on real text ($first -> $last)" jq -en "$last < $first - 0.5"
ok "validation loss is reported" sh -c "jq -e 'select(.type == \"val\") | .val_loss' '$T/a.jsonl' | grep -q ."
ok "checkpoints and latest" test -f "$T/a/step-00000030/model.safetensors" -a "$(cat "$T/a/latest")" = step-00000030
ok "only the last three are kept" test ! -e "$T/a/step-00000015" -a -d "$T/a/step-00000020"
fails_with "a finished run is not overwritten" 1 "already holds a run" train "$T/a" "$T/x.jsonl"

# ---- exact resume after SIGKILL at several moments, and after SIGTERM -------------------------
for delay in 0.0 0.3 0.7; do
    rm -rf "$T/k" "$T/k.jsonl"
    train_bg "$T/k" "$T/k.jsonl"; pid=$!
    while [ ! -f "$T/k/latest" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
    sleep $delay; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    train "$T/k" "$T/k.jsonl" --resume 2>"$T/err"
    is "SIGKILL $delay s after the first checkpoint, then --resume: the same losses bit for bit" \
        "$(losses "$T/k.jsonl" | md5sum)" "$(losses "$T/a.jsonl" | md5sum)"
done
rm -rf "$T/s" "$T/s.jsonl"
train_bg "$T/s" "$T/s.jsonl"; pid=$!
while [ ! -f "$T/s/latest" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
kill -TERM $pid; wait $pid; rc=$?
is "SIGTERM finishes the step, saves and exits 0" "$rc" 0
stopped=$(cat "$T/s/latest")
train "$T/s" "$T/s.jsonl" --resume
is "and the resumed run ($stopped) matches" "$(losses "$T/s.jsonl" | md5sum)" "$(losses "$T/a.jsonl" | md5sum)"

# ---- progressive sparsification ------------------------------------------------------------
train "$T/p" "$T/p.jsonl" --steps 14 --topk-schedule "0:2,1...; 10:1..."
is "the top-k switch is logged at its step" "$(jq -c 'select(.what == "topk_switch") | .step' "$T/p.jsonl")" 10
is "k per layer before and after" "$(jq -c 'select(.type == "train" and (.step == 9 or .step == 10)) | .topk' "$T/p.jsonl" | tr '\n' ' ')" "[2,1] [1,1] "
ok "the schedule is in each checkpoint's config.json" jq -e '.training.topk_schedule == "0:2,1...; 10:1..."' "$T/p/step-00000014/config.json"

# ---- balance --------------------------------------------------------------------------------------
dev() { jq -s '[.[] | select(.type == "train" and .step >= 20) | .load_max[0]] | add / length' "$1"; }
train "$T/b0" "$T/b0.jsonl" --balance none
train "$T/b1" "$T/b1.jsonl" --balance top1-lbl --balance-coef 0.1
ok "top1-lbl holds layer 0's busiest expert closer to its share than none ($(dev "$T/b1.jsonl") < $(dev "$T/b0.jsonl"))" \
    jq -en "$(dev "$T/b1.jsonl") < $(dev "$T/b0.jsonl")"
one() {   # metrics of one step: 4 x 8 sequences as one batch or accumulated
    sigma-pretrain -q --preset test --data "$T/shards" --out "$T/g$1$2" --metrics "$T/g$1$2.jsonl" --seq-len 32 --steps 1 \
        --eval-every 0 --batch-tokens 1024 --micro-batch $1 --balance $2 --balance-coef 0.5
    jq -r 'select(.type == "train") | "\(.balance) \(.grad_norm)"' "$T/g$1$2.jsonl"
}
big=$(one 32 lbl-global); acc=$(one 8 lbl-global); loc=$(one 8 lbl)
close() { echo "$1 $2" | awk '{ d = $1 - $3; if (d < 0) d = -d; g = $2 - $4; if (g < 0) g = -g; exit !(d <= 1e-5 * ($1 > 0 ? $1 : -$1) + 1e-7 && g <= 1e-4 * $2) }'; }
ok "lbl-global over 4 micro-batches equals one batch of 32 ($acc ~ $big)" close "$acc" "$big"
fails "while per-micro-batch lbl differs ($loc)" close "$loc" "$big"

# ---- guards and refusals ------------------------------------------------------------------------
fails_with "a diverging run stops after --max-skips, naming its last checkpoint" 1 "max-skips" \
    train "$T/n" "$T/n.jsonl" --lr 1e30 --warmup 0 --max-skips 3 --clip 0
ok "skipped steps are in the metrics" sh -c "jq -e 'select(.type == \"train\" and .skipped)' '$T/n.jsonl' | grep -q ."
# ---- --resume keeps the run's settings -------------------------------------------------------
# The README's resume command repeats none of the run's flags: every setting
# comes from the checkpoint, the metrics go on in the same file, and a flag
# that contradicts the checkpoint is refused, naming both values.
settings() {   # out [options]
    out=$1; shift
    sigma-pretrain -q --preset test --data "$T/shards" --out "$out" --metrics "$out.jsonl" --seq-len 32 --micro-batch 4 \
        --batch-tokens 256 --steps 6 --save-every 3 --eval-every 0 --lr 1e-2 --warmup 2 --balance top1-lbl \
        --topk-schedule '0:2,1; 3:1...' --z-loss 1e-3 "$@"
}
settings "$T/ru"
settings "$T/rp"
rm -r "$T/rp/step-00000006" && echo step-00000003 >"$T/rp/latest"   # as if killed after step 3
mkdir "$T/elsewhere"
ok "--resume with no setting repeated, from another directory" \
    sh -c "cd '$T/elsewhere' && sigma-pretrain -q --data '$T/shards' --out '$T/rp' --resume"
is "continues with the run's own settings: the same losses bit for bit" "$(losses "$T/rp.jsonl" | md5sum)" "$(losses "$T/ru.jsonl" | md5sum)"
is "and the same recorded settings" "$(jq -c '.training | del(.device, .metrics)' "$T/rp/step-00000006/config.json")" \
    "$(jq -c '.training | del(.device, .metrics)' "$T/ru/step-00000006/config.json")"
is "the metrics went on in the run's file" "$(jq -s 'map(select(.type == "train")) | length' "$T/rp.jsonl")" 6
fails_with "a contradicting flag is refused, naming both values" 1 "made with --balance top1-lbl, this command asks for --balance lbl" \
    sigma-pretrain -q --data "$T/shards" --out "$T/rp" --resume --balance lbl
fails_with "a top-k schedule is compared as parsed" 1 "made with --topk-schedule 0:2,1\.\.\.; 3:1\.\.\., this command asks for --topk-schedule 0:1\.\.\." \
    sigma-pretrain -q --data "$T/shards" --out "$T/rp" --resume --topk-schedule '0:1,1'
ok "the same value repeated is accepted" sigma-pretrain -q --data "$T/shards" --out "$T/rp" --resume --balance top1-lbl --lr 0.01
sigma-pretrain --data "$T/shards" --out "$T/rp" --resume --steps 8 2>"$T/ext.err"
ok "--steps extends a run, saying what it does to the schedule" grep -q "steps: 6 until now, 8 from here on: the learning rate follows the wsd schedule of a 8-step run" "$T/ext.err"
is "and trains to the new end" "$(cat "$T/rp/latest")" step-00000008
# ---- honest output ----------------------------------------------------------------------------
fails_with "a run that cannot fit in memory is refused before allocating, with the numbers" 1 \
    "this run needs about [0-9.]* GiB on the CPU .* GiB of memory is available" \
    sigma-pretrain -q --preset sigma-moe-tiny --data "$T/shards" --out "$T/huge" --device cpu
ok "and leaves nothing behind" test ! -e "$T/huge"
sigma-pretrain --preset test --data "$T/shards" --out "$T/h" --metrics "$T/h.jsonl" --seq-len 32 --micro-batch 4 \
    --batch-tokens 128 --steps 2 --eval-every 2 --eval-batches 1 2>"$T/h.err"
ok "the device chosen is said, and why" grep -Eq "device: (cpu|cuda) \(" "$T/h.err"
is "stderr names a step as the metrics do" "$(sed -n 's/.*step \([0-9]*\): validation loss.*/\1/p' "$T/h.err")" \
    "$(jq -r 'select(.type == "val") | .step' "$T/h.jsonl")"
tokgen bytes --vocab 300 "$text" >"$T/other.tok"
sigma-shard -q -o "$T/other" --val-fraction 0.02 "$T/other.tok"
fails_with "resuming on data of another tokenizer is refused with both" 1 "vocabulary 257\) differs from the shard set's .*vocabulary 300" \
    sigma-pretrain -q --data "$T/other" --out "$T/a" --resume --seq-len 32 --micro-batch 4 --batch-tokens 256 --steps 40
fails_with "resuming with another sequence length is refused, naming both" 1 "made with --seq-len 32, this command asks for --seq-len 64" \
    sigma-pretrain -q --data "$T/shards" --out "$T/a" --resume --seq-len 64 --micro-batch 4 --batch-tokens 256 --steps 40
cp -r "$T/a" "$T/c"
printf 'X' | dd of="$T/c/step-00000030/model.safetensors" bs=1 seek=2000 conv=notrunc status=none
fails_with "a corrupt checkpoint is refused" 1 "model.safetensors: checksum mismatch" \
    train "$T/c" "$T/c.jsonl" --resume --steps 40
jq '.model' "$T/a/step-00000030/config.json" >"$T/cfg.json"
ok "--config takes a model config (here a checkpoint's)" sigma-pretrain -q --config "$T/cfg.json" --data "$T/shards" --out "$T/cf" \
    --seq-len 32 --micro-batch 4 --batch-tokens 128 --steps 2 --eval-every 0
jq '.vocab_size = 200' "$T/cfg.json" >"$T/small.json"
fails_with "a vocabulary below the shard set's is refused with both" 1 "vocabulary \\(200\\) is smaller than the shard set's \\(257" \
    sigma-pretrain -q --config "$T/small.json" --data "$T/shards" --out "$T/sv"
jq '.n_heads = 3' "$T/cfg.json" >"$T/bad.json"
fails_with "a config that cannot work names the field" 1 "n_kv_heads.*must divide n_heads" \
    sigma-pretrain -q --config "$T/bad.json" --data "$T/shards" --out "$T/sv"
fails_with "no checkpoint to resume" 1 "no checkpoint" train "$T/none" "$T/none.jsonl" --resume
fails_with "a sequence longer than the model allows" 2 "max_seq_len" train "$T/y" "$T/y.jsonl" --seq-len 100000
if nvidia-smi >/dev/null 2>&1; then skip "--device cuda without a GPU" "a GPU is visible (make test-gpu covers it)"
else fails_with "--device cuda without a GPU, or in a build without CUDA" 1 "no CUDA device is visible|built without CUDA" \
    train "$T/y" "$T/y.jsonl" --device cuda; fi
ok "--help" sigma-pretrain --help

# ---- trainer.json: sealed by its own checksum, every field checked on --resume ------------------
# edits of $T/a's last checkpoint (a finished 30-step run), then one more step
tj() {   # jq filter -> $T/tj, a copy of the run
    rm -rf "$T/tj"; cp -r "$T/a" "$T/tj"; f=$T/tj/step-00000030/trainer.json
    jq "$1" "$T/a/step-00000030/trainer.json" >"$f.new" && mv "$f.new" "$f"
}
more() { timeout -k 5 60 sigma-pretrain -q --data "$T/shards" --out "$T/tj" --resume --steps 31 "$@"; }
ok "trainer.json carries version 2 and its checksum, last" \
    jq -e '.version == 2 and (.xxh3 | test("^[0-9a-f]{16}$")) and (keys_unsorted | last) == "xxh3"' "$T/a/step-00000030/trainer.json"
tj '.skipped = 1'
fails_with "an edited trainer.json fails its checksum" 1 "trainer.json: checksum mismatch: the file is corrupt" more
tj 'del(.xxh3)'
fails_with "version 2 without its checksum is refused" 1 "field 'xxh3' is missing" more
tj 'del(.xxh3, .version)'
ok "a version 1 trainer.json (no checksum) is still read" more
# version 1 files are checked field by field: what a hostile or broken file says is refused, naming it
tj 'del(.xxh3, .version) | .data_position.group = 7'
fails_with "data_position.group out of range is refused (it made --resume spin forever)" 1 "data_position: field 'group' is 7" more
tj 'del(.xxh3, .version) | .data_position.index = 123456789'
fails_with "data_position.index out of range" 1 "field 'index' is 123456789" more
tj 'del(.xxh3, .version) | .data_position.epoch = 4000000000'
fails_with "data_position.epoch out of range" 1 "field 'epoch' is 4000000000" more
tj 'del(.xxh3, .version) | .step = 1000000000000000'
fails_with "step out of range" 1 "field 'step' is 1000000000000000" more
tj 'del(.xxh3, .version) | .step = 29'
fails_with "step and tokens_seen that disagree" 1 "field 'tokens_seen' is 7680, but 29 steps of 256 tokens make 7424" more
tj 'del(.xxh3, .version) | .loss_history_count = 9000000000000000'
fails_with "loss_history_count out of range (it died at the first save)" 1 "field 'loss_history_count' is 9000000000000000" more
tj 'del(.xxh3, .version) | .expert_bias[3] = 1e30'
fails_with "an expert bias out of range" 1 "field 'expert_bias': item 3 is not a number within" more
tj 'del(.xxh3, .version) | .expert_bias[3] = "x"'
fails_with "an expert bias that is not a number" 1 "field 'expert_bias': item 3" more
tj 'del(.xxh3, .version) | .loss_history = [1]'
fails_with "a loss history of the wrong length" 1 "field 'loss_history' must be an array of 50 numbers" more
tj 'del(.xxh3, .version) | .skipped = 31'
fails_with "more steps skipped than taken" 1 "field 'skipped' is 31" more

# ---- the run directory: one writer, checked before the first step --------------------------------
train_bg "$T/lk" "$T/lk.jsonl" --steps 100000 --save-every 100000; pid=$!
n=0; while ! grep -q "^$pid\$" "$T/lk/.lock" 2>/dev/null && kill -0 $pid 2>/dev/null && [ $n -lt 400 ]; do sleep 0.05; n=$((n + 1)); done
fails_with "a second run into the same --out is refused, naming the first's pid" 1 "lk is in use by process $pid" \
    train "$T/lk" "$T/lk2.jsonl" --steps 3
fails_with "  ... and so is --resume" 1 "in use by process $pid" train "$T/lk" "$T/lk2.jsonl" --resume
kill -TERM $pid; wait $pid
ok "  ... the first run saved and stopped" test -f "$T/lk/latest"
: >"$T/plain"
fails_with "--out naming a regular file is refused before the first step" 1 "plain exists and is not a directory" \
    train "$T/plain" "$T/plain.jsonl" --steps 3
ok "  ... no step was taken" test ! -s "$T/plain.jsonl"
mkdir "$T/stuff"; echo mine >"$T/stuff/notes"
ok "--out an existing directory of other files: a new run beside them" train "$T/stuff" "$T/st.jsonl" --steps 2
ok "  ... which are untouched" test "$(cat "$T/stuff/notes")" = mine
echo "old" >"$T/m.real"; ln -s m.real "$T/mlink"
ok "--metrics a symbolic link" train "$T/ml" "$T/mlink" --steps 2
ok "  ... stays a link" test -L "$T/mlink"
ok "  ... its target written" grep -q '"type":"train"' "$T/m.real"
if [ "$(id -u)" = 0 ] && mknod "$T/full" c 1 7 2>/dev/null; then
    fails_with "--metrics a full device fails with the reason" 1 "No space left on device" train "$T/mf" "$T/full" --steps 2
    ok "  ... which stays a character device" test -c "$T/full"
else
    skip "--metrics a full device" "mknod needs root"; skip "  ... which stays a character device" "mknod needs root"
fi
done_testing
