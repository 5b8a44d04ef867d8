#!/bin/sh
# Training speed on one GPU: sigma's CUDA core beside PyTorch with Hugging
# Face's Qwen3MoeForCausalLM at the same config, eager and torch.compile,
# bf16, the same batch and sequence length, forward + backward, in one run.
# Shapes: the nano preset, and a 4-layer slice of the real sigma-moe-tiny
# (d 1536, 16/4 heads of 96, 96 experts of 768, top-1, vocabulary 200064).
# Prints JSON lines, then a markdown table for bench/gpu.md, then the time
# per phase of sigma's step (CUDA events). sigma runs three ways: the
# default (per-expert cuBLAS products, cuBLAS attention), grouped expert
# kernels (SIGMA_EXPERTS=grouped), and those with the fused attention
# (SIGMA_ATTENTION=flash). Needs a GPU, torch and
# transformers; COMPILE=0 leaves torch.compile out (it compiles for minutes).
#   sh bench/gpu.sh [OUTDIR]
set -u
bin=${SIGMA_TESTBIN:-$PWD/build/tests}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
STEPS=${STEPS:-10} COMPILE=${COMPILE:-1} TLIMIT=${TLIMIT:-240}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

# Each shape: preset B T | sigma's extra arguments | PyTorch's model arguments
shape() {
    case $1 in
    nano) echo "nano 8 2048|--vocab 32768|--d 1024 --layers 20 --heads 16 --kv 4 --hd 64 --experts 32 --de 512 --topk 1 --vocab 32768" ;;
    tiny4) echo "sigma-moe-tiny 2 4096|--layers 4|--d 1536 --layers 4 --heads 16 --kv 4 --hd 96 --experts 96 --de 768 --topk 1 --vocab 200064" ;;
    esac
}
run() {   # mode name
    mode=$1 name=$2
    IFS='|' read -r size extra targs <<EOS
$(shape "$name")
EOS
    set -- $size
    preset=$1 B=$2 T=$3
    if [ "$mode" = sigma ] || [ "$mode" = grouped ] || [ "$mode" = fused ]; then
        experts=grouped attention=cublas
        [ "$mode" = sigma ] && experts=cublas
        [ "$mode" = fused ] && attention=flash
        SIGMA_EXPERTS=$experts SIGMA_ATTENTION=$attention timeout "$TLIMIT" "$bin/gpu_bench" "$preset" "$B" "$T" "$STEPS" $extra --profile \
            >"$out/$name.$mode.json" 2>"$out/$name.$mode.profile.md" ||
            echo "{\"impl\": \"sigma-cuda\", \"error\": \"exit $?\"}" >>"$out/$name.$mode.json"
    else
        timeout "$TLIMIT" python3 bench/cuda_torch.py --mode "$mode" $targs --batch "$B" --seq "$T" --steps "$STEPS" --warmup 2 \
            >"$out/$name.$mode.json" 2>"$out/$name.$mode.err" || echo "{\"impl\": \"pytorch-$mode\", \"error\": \"exit $?\"}" >>"$out/$name.$mode.json"
    fi
    tail -n 1 "$out/$name.$mode.json"
}
# torch.compile last: it compiles for minutes
modes="sigma grouped fused eager"
[ "$COMPILE" = 1 ] && modes="$modes compile"
for mode in $modes; do for name in nano tiny4; do run "$mode" "$name"; done; done

echo
echo "| shape | implementation | tokens/s | ms/step | vs eager | vs compile | MFU (989) | MFU (measured peak) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for name in nano tiny4; do
    e=$(tail -n 1 "$out/$name.eager.json")
    c=$(tail -n 1 "$out/$name.compile.json" 2>/dev/null || echo '{}')
    for mode in sigma grouped fused; do
        s=$(tail -n 1 "$out/$name.$mode.json")
        case $mode in
        sigma) impl="sigma CUDA, per-expert cuBLAS" ;;
        grouped) impl="sigma CUDA, grouped experts" ;;
        fused) impl="sigma CUDA, grouped experts + fused attention" ;;
        esac
        jq -rn --argjson s "$s" --argjson e "$e" --argjson c "$c" --arg n "$name" --arg impl "$impl" '
            def r(x): if x == null then "-" else (x * 100 | round / 100 | tostring) + "x" end;
            ($s.tokens_per_s // null) as $st | ($e.tokens_per_s // null) as $et | ($c.tokens_per_s // null) as $ct |
            "| \($n) | \($impl) | \($st // $s.error) | \($s.ms_per_step // "-") | \(r(if $st and $et then $st / $et else null end)) | \(r(if $st and $ct then $st / $ct else null end)) | \($s.mfu_989 // "-") | \($s.mfu_measured_peak // "-") |"'
    done
    jq -rn --argjson e "$e" --argjson c "$c" --arg n "$name" '
        ($e.tokens_per_s // null) as $et | ($c.tokens_per_s // null) as $ct |
        "| \($n) | PyTorch eager | \($et // $e.error) | \($e.ms_per_step // "-") | 1x | | | |",
        "| \($n) | PyTorch torch.compile | \($ct // $c.error // "not run") | \($c.ms_per_step // "-") | | 1x | | |"'
done
for name in nano tiny4; do for mode in sigma grouped fused; do
    echo; echo "sigma ($mode), $name:"; cat "$out/$name.$mode.profile.md"
done; done
