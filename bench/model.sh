#!/bin/sh
# Forward + backward tokens/s of the CPU model for the micro preset beside
# PyTorch eager (Hugging Face Qwen3MoeForCausalLM, the same shape, fp32, the
# same threads and batch), runs alternated. Needs pip install torch transformers.
#
# The c-kernels machines set OPENBLAS_CORETYPE=Haswell (older OpenBLAS builds
# misbehave on some processors), which keeps OpenBLAS on AVX2 kernels; the row
# "native kernels" unsets it for that command alone, as PyTorch is not held
# back so. The first row names the setting it ran with.
set -eu
B=${B:-16} T=${T:-128} STEPS=${STEPS:-5} V=${V:-4096} REPS=${REPS:-3}
threads=$(nproc)
bin=${SIGMA_TESTBIN:-$PWD/build/tests}
best() { sort -g | tail -n 1; }
s1=""; s2=""; p=""
for r in $(seq "$REPS"); do
    s1="$s1 $(OMP_NUM_THREADS=$threads "$bin/model_bench" micro "$V" "$B" "$T" "$STEPS")"
    s2="$s2 $(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=$threads "$bin/model_bench" micro "$V" "$B" "$T" "$STEPS")"
    # micro: d 128, 4 layers, 4 / 2 heads of 32, 16 experts of 64, top-1
    p="$p $(python3 bench/model_torch.py 128 4 4 2 32 16 64 "$V" "$B" "$T" "$STEPS" "$threads" 2>/dev/null)"
done
S1=$(echo $s1 | tr ' ' '\n' | best); S2=$(echo $s2 | tr ' ' '\n' | best); P=$(echo $p | tr ' ' '\n' | best)
echo "micro preset, batch ${B}x${T}, vocabulary $V, $threads threads, best of $REPS runs of $STEPS steps"
echo "| implementation | tokens/s (forward + backward) | vs PyTorch eager |"
echo "| --- | ---: | ---: |"
echo "| sigma, OpenBLAS as this machine sets it (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}) | $S1 | $(echo "scale=2; $S1 / $P" | bc)x |"
echo "| sigma, OpenBLAS native kernels (AVX-512) | $S2 | $(echo "scale=2; $S2 / $P" | bc)x |"
echo "| PyTorch $(python3 -c 'import torch; print(torch.__version__)') eager, HF Qwen3MoeForCausalLM | $P | 1x |"
