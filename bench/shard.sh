#!/bin/sh
# sigma-shard on 1e8 tokens from a pipe: input throughput with and without
# zstd, the compression ratio, verify and cat, beside `zstd -T1` on the same
# tokens as raw 16-bit bytes. The tokens are the bytes of real text
# (tinyshakespeare and Debian's copyright files), repeated to 1e8.
set -eu
out=${BENCH_OUT:-bench/out}; mkdir -p "$out"
data=${SIGMA_DATA:-../shared/data}
tokens=${TOKENS:-100000000}
PATH="${SIGMA_BIN:-$PWD/bin}:${SIGMA_TESTBIN:-$PWD/build/tests}:$PATH"
cat "$data/corpora/tinyshakespeare.txt" /usr/share/doc/*/copyright 2>/dev/null | head -c 20000000 >"$out/text"
size=$(wc -c <"$out/text")
rep=$(( (tokens + size - 1) / size ))
tokgen bytes --repeat "$rep" "$out/text" >"$out/big.tok"
tokgen bytes --repeat "$rep" --raw16 "$out/text" >"$out/big.u16"
ntok=$(( ($(wc -c <"$out/big.u16")) / 2 ))
inbytes=$(wc -c <"$out/big.tok")
t() { s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
row() { printf '| %s | %s | %.0f | %.1f | %s |\n' "$1" "$2" "$(echo "$3 / $2" | bc -l)" "$(echo "$4 / $2 / 1000000" | bc -l)" "$5"; }
echo "tokens: $ntok; stream bytes: $inbytes; $(nproc) cores; $(date -u +%F)"
echo "| command | seconds | tokens/s | MB/s (input) | ratio |"
echo "| --- | --- | --- | --- | --- |"
rm -rf "$out/s0" "$out/s3"
s0=$(t sh -c "cat '$out/big.tok' | sigma-shard -q --no-compress -o '$out/s0' --val-fraction 0.001")
row "cat stream \| sigma-shard --no-compress" "$s0" "$ntok" "$inbytes" "$(echo "scale=2; $ntok * 2 / $(du -sb "$out/s0" | cut -f1)" | bc)"
s3=$(t sh -c "cat '$out/big.tok' | sigma-shard -q -o '$out/s3' --val-fraction 0.001")
row "cat stream \| sigma-shard (zstd -3)" "$s3" "$ntok" "$inbytes" "$(echo "scale=2; $ntok * 2 / $(du -sb "$out/s3" | cut -f1)" | bc)"
z=$(t sh -c "cat '$out/big.u16' | zstd -q -T1 -3 -c >'$out/big.u16.zst'")
row "cat raw16 \| zstd -T1 -3" "$z" "$ntok" "$((ntok * 2))" "$(echo "scale=2; $ntok * 2 / $(wc -c <"$out/big.u16.zst")" | bc)"
v=$(t sigma-shard -q verify "$out/s3")
row "sigma-shard verify (zstd set)" "$v" "$ntok" "$inbytes" "-"
c=$(t sh -c "sigma-shard cat '$out/s3' >/dev/null")
row "sigma-shard cat (zstd set)" "$c" "$ntok" "$inbytes" "-"
rm -rf "$out/s0" "$out/s3" "$out/big.tok" "$out/big.u16" "$out/big.u16.zst"
