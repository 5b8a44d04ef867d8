#!/bin/sh
# Real text for the tokenizer benchmarks, built from what a Debian system
# carries (man pages, /usr/share/doc) plus Shakespeare and LAMBADA from
# $SIGMA_DATA, into bench/out/tokenize/ (not committed):
#   train.txt     about 100 MB, for training
#   heldout.txt   every 20th source file, for bytes per token
#   encode.txt    the first 32 MB of train.txt, for encode speed
# Binary files and files that are not valid UTF-8 (HF's trainer refuses
# them) are left out.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$here/out/tokenize
data=${SIGMA_DATA:-$here/../../shared/data}
mkdir -p "$out"
: >"$out/train.txt"; : >"$out/heldout.txt"
i=0
find /usr/share/man /usr/share/doc -type f | LC_ALL=C sort | while read -r f; do
    case $f in *.gz) cmd="gzip -dc" ;; *.html|*.png|*.jpg|*.svg|*.pdf) continue ;; *) cmd=cat ;; esac
    $cmd "$f" 2>/dev/null >"$out/one" || continue
    grep -qI . "$out/one" 2>/dev/null || continue   # binary or empty
    iconv -f UTF-8 -t UTF-8 "$out/one" >/dev/null 2>&1 || continue   # HF's trainer wants valid UTF-8
    i=$((i + 1))
    if [ $((i % 20)) -eq 0 ]; then cat "$out/one" >>"$out/heldout.txt"; else cat "$out/one" >>"$out/train.txt"; fi
    [ "$(stat -c %s "$out/train.txt")" -lt 100000000 ] || break
done
rm -f "$out/one"
if [ -f "$data/corpora/tinyshakespeare.txt" ]; then cat "$data/corpora/tinyshakespeare.txt" >>"$out/train.txt"; fi
head -c 32000000 "$out/train.txt" >"$out/encode.txt"
ls -l "$out"
