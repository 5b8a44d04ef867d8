#!/bin/sh
# Training speed on one GPU: sigma's CUDA core, every attention path
# (cublas, flash, cudnn) with every expert path (cublas, grouped, cutlass),
# beside PyTorch with Hugging Face's Qwen3MoeForCausalLM at the same config,
# eager and torch.compile, bf16, the same batch and sequence length,
# forward + backward, in one run.
# Shapes: the nano preset, and a 4-layer slice of the real sigma-moe-tiny
# (d 1536, 16/4 heads of 96, 96 experts of 768, top-1, vocabulary 200064).
# Writes under OUTDIR each run's JSON lines and phase profiles, then prints
# a markdown table for bench/gpu.md and appends one JSON line per shape and
# variant to RESULTS (default bench/results/gpu.jsonl): date, gpu, commit,
# shape, variant, tokens_per_s, ms_per_step, mfu (of 989 TFLOP/s),
# mfu_measured_peak, peer (torch.compile, else eager), peer_tokens_per_s,
# ratio, eager_tokens_per_s, ratio_eager, error. A variant that cannot run
# (no cuDNN, no CUTLASS kernels, a crash) is a line with its error; the
# others go on. Needs a GPU; torch and transformers for PyTorch's rows
# (TORCH=0 leaves PyTorch out, COMPILE=0 torch.compile only: it compiles
# for minutes). STEPS timed steps (default 8) after 2 warm-up steps. What
# would not end within DEADLINE seconds of the start (default 450: one
# device command, with the checks before it) is left out, with a row that
# says so.
#   sh bench/gpu.sh [OUTDIR]
set -u
bin=${SIGMA_TESTBIN:-$PWD/build/tests}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
STEPS=${STEPS:-8} COMPILE=${COMPILE:-1} TORCH=${TORCH:-1} TLIMIT=${TLIMIT:-240} DEADLINE=${DEADLINE:-450}
RESULTS=${RESULTS:-bench/results/gpu.jsonl}
VARIANTS=${VARIANTS:-cublas:cublas cublas:grouped cublas:cutlass flash:cublas flash:grouped flash:cutlass cudnn:cublas cudnn:grouped cudnn:cutlass}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$( (git rev-parse --short HEAD 2>/dev/null || echo unknown) | head -n 1)
t_start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t_start )) s"; }
left() { echo $(( DEADLINE - ($(date +%s) - t_start) )); }
limit() { l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }   # seconds for a piece: N, or what is left if less

# Each shape: preset B T | sigma's extra arguments | PyTorch's model arguments
shape() {
    case $1 in
    nano) echo "nano 8 2048|--vocab 32768|--d 1024 --layers 20 --heads 16 --kv 4 --hd 64 --experts 32 --de 512 --topk 1 --vocab 32768" ;;
    tiny4) echo "sigma-moe-tiny 2 4096|--layers 4|--d 1536 --layers 4 --heads 16 --kv 4 --hd 96 --experts 96 --de 768 --topk 1 --vocab 200064" ;;
    esac
}
# sigma NAME: every variant in one gpu_bench process ($out/NAME.sigma.json,
# a line each); those without a line after it ended (a crash takes the rest
# with it) again one by one, each alone, so one failure costs only its own.
sigma() {
    name=$1
    IFS='|' read -r size extra targs <<EOS
$(shape "$name")
EOS
    set -- $size
    preset=$1 B=$2 T=$3
    f="$out/$name.sigma.json"
    : >"$f"
    timeout "$(limit "$TLIMIT")" "$bin/gpu_bench" "$preset" "$B" "$T" "$STEPS" $extra --profile --variants "$(echo $VARIANTS | tr ' ' ,)" \
        >>"$f" 2>"$out/$name.sigma.err" || echo "# gpu_bench, all variants: exit $?" >>"$out/$name.sigma.err"
    for v in $VARIANTS; do
        a=${v%%:*} e=${v#*:}
        jq -se --arg a "$a" --arg e "$e" 'any(.[]; .attention == $a and .experts == $e)' "$f" >/dev/null 2>&1 && continue
        if [ "$(left)" -lt 90 ]; then
            echo "{\"impl\": \"sigma-cuda\", \"attention\": \"$a\", \"experts\": \"$e\", \"error\": \"not run: out of time\"}" >>"$f"
            continue
        fi
        echo "# $v again, alone" >>"$out/$name.sigma.err"
        timeout "$(limit 90)" "$bin/gpu_bench" "$preset" "$B" "$T" "$STEPS" $extra --profile --variants "$v" >>"$f" 2>>"$out/$name.sigma.err" ||
            echo "{\"impl\": \"sigma-cuda\", \"attention\": \"$a\", \"experts\": \"$e\", \"error\": \"gpu_bench exit $? (see $name.sigma.err)\"}" >>"$f"
    done
    echo "sigma, $name: $(grep -c tokens_per_s "$f") of $(echo $VARIANTS | wc -w) variants timed ($(elapsed))"
}
torch_run() {   # mode name
    mode=$1 name=$2
    IFS='|' read -r size extra targs <<EOS
$(shape "$name")
EOS
    set -- $size
    f="$out/$name.$mode.json" need=60
    [ "$mode" = compile ] && need=150   # it compiles for one to two minutes
    if [ "$(left)" -lt "$need" ]; then
        echo "{\"impl\": \"pytorch-$mode\", \"error\": \"not run: $(left) s left of DEADLINE=$DEADLINE\"}" >"$f"
        echo "PyTorch $mode, $name: not run, out of time"
        return
    fi
    timeout "$(limit "$TLIMIT")" python3 bench/cuda_torch.py --mode "$mode" $targs --batch "$2" --seq "$3" --steps "$STEPS" --warmup 2 \
        >"$f" 2>"$out/$name.$mode.err" ||   # its own error line where it wrote one (a timeout leaves none)
        { rc=$?; grep -q '"impl"' "$f" || echo "{\"impl\": \"pytorch-$mode\", \"error\": \"exit $rc (see $name.$mode.err)\"}" >>"$f"; }
    echo "PyTorch $mode, $name: $(tail -n 1 "$f" | jq -r 'if .tokens_per_s then "\(.tokens_per_s) tokens/s" else .error end') ($(elapsed))"
}

for name in nano tiny4; do sigma "$name"; done
if [ "$TORCH" = 1 ]; then
    for name in nano tiny4; do torch_run eager "$name"; done
    # torch.compile last: it compiles for minutes
    [ "$COMPILE" = 1 ] && for name in nano tiny4; do torch_run compile "$name"; done
fi

# The rows: every variant and PyTorch's, with the peers of the shape.
rows() {
    for name in nano tiny4; do
        e=$(tail -n 1 "$out/$name.eager.json" 2>/dev/null || echo '{}')
        c=$(tail -n 1 "$out/$name.compile.json" 2>/dev/null || echo '{}')
        { cat "$out/$name.sigma.json"; echo "$e"; echo "$c"; } | jq -c --arg shape "$name" --argjson e "$e" --argjson c "$c" \
            --arg date "$date" --arg gpu "$gpu" --arg commit "$commit" '
            select(.impl != null) |
            ($e.tokens_per_s // null) as $et | ($c.tokens_per_s // null) as $ct |
            (if $ct then "pytorch-compile" elif $et then "pytorch-eager" else null end) as $peer |
            ($ct // $et) as $pt |
            def r(x; y): if x and y then (x / y * 1000 | round / 1000) else null end;
            {date: $date, gpu: $gpu, commit: $commit, shape: $shape,
             variant: (if .impl == "sigma-cuda" then "\(.attention):\(.experts)" else .impl end),
             tokens_per_s: (.tokens_per_s // null), ms_per_step: (.ms_per_step // null),
             mfu: (.mfu_989 // null), mfu_measured_peak: (.mfu_measured_peak // null),
             peer: $peer, peer_tokens_per_s: $pt, ratio: r(.tokens_per_s; $pt),
             eager_tokens_per_s: $et, ratio_eager: r(.tokens_per_s; $et), error: (.error // null)}'
    done
}
rows >"$out/gpu.jsonl"
mkdir -p "$(dirname "$RESULTS")"
[ "$RESULTS" -ef "$out/gpu.jsonl" ] || cat "$out/gpu.jsonl" >>"$RESULTS"

echo
echo "| shape | implementation | tokens/s | ms/step | vs eager | vs compile | MFU (989) | MFU (measured peak) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
jq -r '
    def x(v): if v == null then "-" else "\(v)x" end;
    def pct(v): if v == null then "-" else "\(v * 1000 | round / 10)%" end;
    (if .variant | startswith("pytorch") then (if .variant == "pytorch-eager" then "PyTorch eager" else "PyTorch torch.compile" end)
     else "sigma, attention \(.variant | split(":")[0]), experts \(.variant | split(":")[1])" end) as $impl |
    "| \(.shape) | \($impl) | \(.tokens_per_s // .error) | \(.ms_per_step // "-") | \(x(.ratio_eager)) | \(if .peer == "pytorch-compile" then x(.ratio) else "-" end) | \(pct(.mfu)) | \(pct(.mfu_measured_peak)) |"' "$out/gpu.jsonl"
echo
echo "fastest sigma variant per shape (by tokens/s; the default only if it also passes make test-gpu):"
jq -rs 'group_by(.shape)[] | map(select(.tokens_per_s and (.variant | startswith("pytorch") | not))) | max_by(.tokens_per_s) // empty |
    "  \(.shape): \(.variant), \(.tokens_per_s) tokens/s, \(.ratio // "-")x \(.peer // "")"' "$out/gpu.jsonl"
echo "results: $out/gpu.jsonl (appended to $RESULTS); the profiles: $out/*.sigma.err; $(elapsed) in all"
