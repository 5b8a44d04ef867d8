#!/bin/sh
# sigma-plot: PNG and SVG of the size asked for, the series it draws equal
# the file's (jq's extraction of the same keys), smoothing, the terminal,
# and clear errors for a file that is not metrics, an empty run, an absent
# key, --log of a negative value and a missing gnuplot; no partial output.
. "$(dirname "$0")/lib.sh"

# A metrics file as sigma-pretrain writes it: 2 layers, a validation every 4 steps.
awk 'BEGIN {
    for (s = 0; s < 12; s++) {
        printf "{\"type\":\"train\",\"step\":%d,\"loss\":%.6f,\"lr\":0.001,\"topk\":[1,1],", s, 6 - s * 0.25 + (s % 3) * 0.1
        printf "\"load_max\":[%.4f,%.4f],\"load_min\":[%.4f,%.4f]}\n", 2 - s * 0.1, 0.5 + s * 0.01, -0.9 + s * 0.02, -0.3
        if (s % 4 == 3) printf "{\"type\":\"val\",\"step\":%d,\"val_loss\":%.6f,\"val_tokens\":4096}\n", s, 6.2 - s * 0.2
    }
    printf "{\"type\":\"event\",\"step\":11,\"what\":\"checkpoint\"}\n"
}' >"$T/a.jsonl"
sed 's/"loss":\([0-9.]*\)/"loss":\1e0/' "$T/a.jsonl" | awk '{ sub(/"loss":6/, "\"loss\":7"); print }' >"$T/b.jsonl"

# ---- the series are the file's ------------------------------------------------------------
# jq's extraction of KEY (a jq path) as "step value", against --dump's
dump() { sigma-plot --dump "$@" | cut -f 3,4 | tr '\t' ' '; }
close_to() {   # name "a lines" "b lines": same steps, values within 1e-12
    if [ -n "$2" ] && [ "$(printf '%s\n' "$2" | wc -l)" -eq "$(printf '%s\n' "$3" | wc -l)" ] &&
        paste -d ' ' "$(printf '%s\n' "$2" >"$T/.x"; echo "$T/.x")" "$(printf '%s\n' "$3" >"$T/.y"; echo "$T/.y")" |
        awk '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 1e-12) exit 1 }'; then _pass "$1"
    else _fail "$1"; echo "#   got:      $(echo $2 | head -c 200)"; echo "#   expected: $(echo $3 | head -c 200)"; fi
}
for key in loss val_loss 'load_max[0]' 'load_min[1]'; do
    path=$(echo "$key" | sed 's/\[/[/')
    close_to "--dump -y $key: jq's .$path of every line that has it" "$(dump -y "$key" "$T/a.jsonl")" \
        "$(jq -r "select(.${key%%\[*} != null) | \"\(.step) \(.$path)\"" "$T/a.jsonl")"
done
is "--dump names the run and the key" "$(sigma-plot --dump -y val_loss "$T/a.jsonl" | head -n 1 | cut -f 1,2)" "a	val_loss"
is "--names renames the runs" "$(sigma-plot --dump -y val_loss --names x,y "$T/a.jsonl" "$T/b.jsonl" | cut -f 1 | uniq | tr '\n' ' ')" "x y "
close_to "two runs: each run's own series" "$(sigma-plot --dump -y loss "$T/a.jsonl" "$T/b.jsonl" | awk '$1 == "b"' | cut -f 3,4 | tr '\t' ' ')" \
    "$(jq -r 'select(.loss) | "\(.step) \(.loss)"' "$T/b.jsonl")"
close_to "--smooth 3: the mean of the last 3 points" "$(dump -y loss --smooth 3 "$T/a.jsonl")" \
    "$(jq -sr '[.[] | select(.loss)] as $l | range(0; $l | length) as $i
               | ($l[([$i - 2, 0] | max):$i + 1] | map(.loss)) as $w | "\($l[$i].step) \($w | add / length)"' "$T/a.jsonl")"
is "--load draws each layer's max and min" "$(sigma-plot --dump --load "$T/a.jsonl" | cut -f 2 | uniq | tr '\n' ' ')" \
    "load_max[0] load_min[0] load_max[1] load_min[1] "
is "--layers picks layers" "$(sigma-plot --dump --heatmap --layers 1 "$T/a.jsonl" | cut -f 2 | uniq | tr '\n' ' ')" "load_max[1] "

# ---- pictures ----------------------------------------------------------------------------------
# a PNG's signature, then IHDR's width and height (big-endian u32 at bytes 16 and 20)
png_size() {
    sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
    [ "$sig" = 89504e470d0a1a0a ] || { echo "not a PNG ($sig)"; return; }
    [ "$(od -An -c -j12 -N4 "$1" | tr -d ' \n')" = IHDR ] || { echo "no IHDR first"; return; }
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", (($1 * 256 + $2) * 256 + $3) * 256 + $4, (($5 * 256 + $6) * 256 + $7) * 256 + $8 }'
}
svg_size() {
    if command -v xmllint >/dev/null 2>&1; then
        xmllint --noout "$1" 2>/dev/null || { echo "not well-formed XML"; return; }
        w=$(xmllint --xpath 'string(/*[local-name()="svg"]/@width)' "$1"); h=$(xmllint --xpath 'string(/*[local-name()="svg"]/@height)' "$1")
    else   # a structural check: the root element, its size, and its end
        grep -q '</svg>' "$1" || { echo "no </svg>"; return; }
        w=$(sed -n 's/^<svg.* width="\([0-9]*\)".*/\1/p' "$1" | head -n 1); h=$(sed -n 's/^<svg.* height="\([0-9]*\)".*/\1/p' "$1" | head -n 1)
    fi
    echo "${w}x$h"
}
if command -v gnuplot >/dev/null 2>&1; then
    ok "a PNG of loss and val_loss" sigma-plot -o "$T/l.png" -y loss,val_loss --size 640x400 "$T/a.jsonl" "$T/b.jsonl"
    is "  a valid PNG of 640x400" "$(png_size "$T/l.png")" 640x400
    ok "an SVG of layer 0's load" sigma-plot -o "$T/l.svg" -y 'load_max[0],load_min[0]' --size 700x300 --title "it's 0" "$T/a.jsonl"
    is "  a valid SVG of 700x300" "$(svg_size "$T/l.svg")" 700x300
    ok "  the SVG names the series" grep -q 'load_max\[0\]' "$T/l.svg"
    ok "--load, a panel per run" sigma-plot -o "$T/load.png" --load "$T/a.jsonl" "$T/b.jsonl"
    is "  800 by 300 a panel" "$(png_size "$T/load.png")" 800x600
    ok "--heatmap as SVG" sigma-plot -o "$T/heat.svg" --heatmap --size 500x500 "$T/a.jsonl"
    is "  a valid SVG of 500x500" "$(svg_size "$T/heat.svg")" 500x500
    ok "--log --smooth" sigma-plot -o "$T/log.png" -y loss --log --smooth 4 "$T/a.jsonl"
    ok "--terminal draws text" sigma-plot --terminal --size 70x20 -y loss "$T/a.jsonl"
    tr -d '\f' <"$T/.out" >"$T/term.txt"
    is "  70 columns, 20 lines" "$(awk '{ if (length($0) > w) w = length($0) } END { print w "x" NR }' "$T/term.txt")" 70x20
    ok "  with the axis" grep -q step "$T/term.txt"
    is "no temporary file is left beside the pictures" "$(ls "$T" | grep -c tmp)" 0
    fails_with "gnuplot missing: said so" 1 "gnuplot not found.*gnuplot-nox" env PATH="$SIGMA_BIN" sigma-plot -o "$T/n.png" "$T/a.jsonl"
    ok "  and no picture" test ! -e "$T/n.png"
else
    skip "the pictures" "gnuplot is not installed (apt-get install gnuplot-nox)"
fi

# ---- bad input ----------------------------------------------------------------------------------
printf '{"type":"train","step":0,"loss":1}\nhello\n' >"$T/bad.jsonl"
fails_with "a line that is not metrics: the file and the line" 1 "bad.jsonl:2: not a metrics line" sigma-plot --dump "$T/bad.jsonl"
printf '{"task":"loss","loss":3.2}\n' >"$T/eval.json"
fails_with "an object without type and step" 1 "eval.json:1: not a metrics line" sigma-plot --dump "$T/eval.json"
: >"$T/empty.jsonl"
fails_with "an empty run" 1 "empty.jsonl: no metrics lines" sigma-plot --dump "$T/empty.jsonl"
fails_with "an absent key, with the keys there are" 1 "no line has the key 'val_los' \(its keys: type, step, loss, lr" \
    sigma-plot -o "$T/x.png" -y val_los "$T/a.jsonl"
ok "  and no picture" test ! -e "$T/x.png"
fails_with "an array key without an element" 1 "'load_max' is an array: name an element" sigma-plot --dump -y load_max "$T/a.jsonl"
fails_with "an element past the array" 1 "a.jsonl:1: 'load_max' has 2 elements, no \[2\]" sigma-plot --dump -y 'load_max[2]' "$T/a.jsonl"
fails_with "--log of a negative value" 1 "'load_min\[0\]' is -0.9 at step 0: --log" sigma-plot --dump --log -y 'load_min[0]' "$T/a.jsonl"
printf '{"type":"val","step":3,"val_loss":2}\n' >"$T/noload.jsonl"
fails_with "--load of a file without the load" 1 "noload.jsonl: no line has the per-layer load" sigma-plot --dump --load "$T/noload.jsonl"
fails_with "a missing file" 1 "none.jsonl" sigma-plot --dump "$T/none.jsonl"
fails_with "-o of another kind" 2 "a .png or .svg file" sigma-plot -o "$T/x.jpg" "$T/a.jsonl"
fails_with "no output named" 2 "one of -o FILE, --terminal and --dump" sigma-plot "$T/a.jsonl"
fails_with "--names of another count" 2 "2 names for 1 files" sigma-plot --dump --names a,b "$T/a.jsonl"
fails_with "--layers past the model" 2 "--layers" sigma-plot --dump --load --layers 2 "$T/a.jsonl"

done_testing
