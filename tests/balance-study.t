#!/bin/sh
# The balance study (pipelines/balance-study.mk) end to end at a tiny scale:
# a few of Debian's fortunes, every recipe for 6 steps of 512 tokens; the
# pictures are PNGs, and every number of the table is the runs' own: the
# held-out columns recomputed from each run's sigma-eval JSON, the end-of-
# training column from its metrics, each run as long as asked.
. "$(dirname "$0")/lib.sh"

fortunes=/usr/share/games/fortunes
if [ ! -f "$fortunes/riddles" ] || ! command -v gnuplot >/dev/null 2>&1; then
    skip "the balance study" "needs the fortunes and gnuplot-nox packages (make deps)"
    done_testing
    exit 0
fi
O=$T/study
# the sub-make must not inherit make test's own flags and variables (SAN=1, O=..., -w)
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory "$@"; }
ok "make -f pipelines/balance-study.mk runs end to end" mk -C "$SIGMA_ROOT" -j2 -f pipelines/balance-study.mk \
    SIGMA_BIN="$SIGMA_BIN" OUT="$O" SCALE=0.03 SEQS=4 VOCAB=512 FORTUNES="$fortunes/riddles $fortunes/love $fortunes/kids"

recipes=$(mk -C "$SIGMA_ROOT" -f pipelines/balance-study.mk --eval 'print-recipes: ; @echo $(RECIPES)' print-recipes)
n=$(echo $recipes | wc -w)
is "the table has a row per recipe ($n)" "$(grep -c '^| [a-z]' "$O/table.md" | tr -d ' ')" "$((n + 1))"
pngs=0
for f in "$O"/*.png; do [ "$(od -An -tx1 -N8 "$f" | tr -d ' \n')" = 89504e470d0a1a0a ] && pngs=$((pngs + 1)); done
is "nine pictures, each a PNG" "$pngs" 9

# a column of the table's row for recipe $1 ($2: the column, 1 = recipe)
col() { awk -F' \\| ' -v r="$1" -v c="$2" '{ sub(/^\| /, ""); sub(/ \|$/, "") } $1 == r { print $c }' "$O/table.md"; }
pct() { jq -r '. * 100 | round | if . > 0 then "+\(.)" else "\(.)" end'; }
bad=""
for r in $recipes; do
    e=$O/runs/$r.eval.json m=$O/runs/$r.jsonl
    [ -f "$e" ] && [ -f "$m" ] || { bad="$bad $r:files"; continue; }
    # held-out: sigma-eval's loss and each layer's load
    [ "$(col "$r" 3)" = "$(jq '.loss * 1000 | round / 1000' "$e")" ] || bad="$bad $r:val_loss"
    [ "$(col "$r" 4)" = "$(jq -r '[.load[].load_max | . * 100 | round | if . > 0 then "+\(.)" else "\(.)" end] | join(" / ")' "$e")" ] ||
        bad="$bad $r:by-layer"
    [ "$(col "$r" 5)" = "$(jq '[.load[].load_max] | max' "$e" | pct)% (layer $(jq '.load | max_by(.load_max) | .layer' "$e"))" ] ||
        bad="$bad $r:worst-max"
    [ "$(col "$r" 6)" = "$(jq '[.load[].load_min] | min' "$e" | pct)%" ] || bad="$bad $r:worst-min"
    [ "$(col "$r" 7)" = "$(jq '[.load[].idle_experts] | add' "$e")" ] || bad="$bad $r:starved"
    # the end of training, from the metrics: the last step's (6 steps: the last tenth is one step)
    last=$(grep '"type":"train"' "$m" | tail -n 1)
    want="$(echo "$last" | jq '.load_max | max' | pct)% / $(echo "$last" | jq '.load_min | min' | pct)%"
    [ "$(col "$r" 8)" = "$want" ] || bad="$bad $r:end-of-training"
    [ "$(grep -c '"type":"train"' "$m")" = 6 ] || bad="$bad $r:steps"
    [ "$(jq -r .checkpoint "$e")" = "$O/runs/$r" ] && [ "$(cat "$O/runs/$r/latest")" = step-00000006 ] || bad="$bad $r:checkpoint"
done
is "every number of the table is its run's (sigma-eval JSON, metrics)" "$bad" ""
ok "the recipes differ: top1-lbl a=1e-1 is not the unbalanced run" \
    test "$(col top1-lbl-1e-1 4)" != "$(col none 4)"
ok "progressive sparsification ran layers 0 and 1 at top-4, then top-1" \
    jq -se '[.[] | select(.type == "train") | .topk] | .[0] == [4,4,1,1] and .[-1] == [1,1,1,1]' "$O/runs/prog-lbl-1e-3.jsonl"

done_testing
