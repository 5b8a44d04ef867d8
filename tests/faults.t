#!/bin/sh
# Faults while writing: sigma-shard stopped by a signal or SIGKILL, a full
# disk under a shard set, a checkpoint and an export (a small tmpfs, as
# root), and the memory a 100 MB single-line document takes.
. "$(dirname "$0")/lib.sh"

tokgen random --tokens 400000 --vocab 1000 --seed 1 --mean-doc 300 >"$T/r.tok"
leftovers() { ls -d "$@" 2>/dev/null | wc -l; }

# ---- sigma-shard stopped by a signal while writing: nothing is left ------------------------
# the stream comes through a FIFO that stalls halfway, so the signal finds shards being written
for s in TERM:143 INT:130 HUP:129; do
    sig=${s%%:*} want=${s#*:}
    rm -f "$T/fifo"; mkfifo "$T/fifo"
    env --default-signal="$sig" sigma-shard -q -o "$T/sig" --shard-tokens 1000 "$T/fifo" & pid=$!
    { head -c 200000 "$T/r.tok"; sleep 60; } >"$T/fifo" & feeder=$!
    n=0; while [ "$(ls "$T"/sig.tmp.*/ 2>/dev/null | wc -l)" -lt 3 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
    kill -"$sig" $pid; wait $pid; rc=$?
    kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
    is "SIG$sig while writing: the signal's exit status" "$rc" "$want"
    is "  ... and neither the set nor its temporary directory is left" "$(leftovers "$T/sig" "$T"/sig.tmp.*)" 0
done

# ---- SIGKILL while writing: the old set intact, the leftover removed by the next writer ---------
sigma-shard -q -o "$T/k" --shard-tokens 1000 "$T/r.tok"
rm -f "$T/fifo"; mkfifo "$T/fifo"
sigma-shard -q -o "$T/k" --force --shard-tokens 500 "$T/fifo" & pid=$!
{ head -c 200000 "$T/r.tok"; sleep 60; } >"$T/fifo" & feeder=$!
n=0; while [ "$(ls "$T"/k.tmp.*/ 2>/dev/null | wc -l)" -lt 3 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
kill -KILL $pid; wait $pid 2>/dev/null
kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
ok "SIGKILL while replacing a set (--force): the old set is intact" sigma-shard -q verify "$T/k"
is "  ... and its shard size is the old one's" "$(jq .shard_tokens "$T/k/manifest.json")" 1000
is "  ... the killed writer's temporary directory is there" "$(leftovers "$T"/k.tmp.*)" 1
ok "the next writer of the set" sigma-shard -q -o "$T/k" --force --shard-tokens 700 "$T/r.tok"
is "  ... removed it" "$(leftovers "$T"/k.tmp.*)" 0
ok "  ... and wrote its own" sigma-shard -q verify "$T/k"

# ---- a full disk: a clean failure, nothing under the final name -----------------------------------
M=$T/mnt
mkdir "$M"
full() {   # SIZE: a fresh tmpfs of that size on $M (root only)
    umount "$M" 2>/dev/null
    mount -t tmpfs -o size="$1" tmpfs "$M" 2>/dev/null
}
trap 'umount "$M" 2>/dev/null; rm -rf "$T"' EXIT
if [ "$(id -u)" = 0 ] && full 1m; then
    tokgen random --tokens 1000000 --vocab 1000 --seed 2 --mean-doc 300 >"$T/big.tok"   # 2 MB of shards
    fails_with "sigma-shard on a full disk fails with the reason" 1 "No space left on device|File too large" \
        sigma-shard -q -o "$M/set" --no-compress --shard-tokens 50k "$T/big.tok"
    is "  ... nothing under the final name, no temporary directory" "$(leftovers "$M/set" "$M"/set.tmp.*)" 0

    tokgen bytes /usr/share/common-licenses/GPL-3 >"$T/text.tok"
    sigma-shard -q -o "$T/shards" --val-fraction 0 "$T/text.tok"
    full 1m
    fails_with "sigma-pretrain on a full disk fails at a checkpoint with the reason" 1 "No space left on device" \
        sigma-pretrain -q --preset test --data "$T/shards" --out "$M/run" --seq-len 32 --micro-batch 4 --batch-tokens 128 \
        --steps 4 --save-every 1 --eval-every 0
    is "  ... latest names the last complete checkpoint" "$(cat "$M/run/latest")" step-00000001
    ok "  ... which is whole" sh -c "cd '$M/run/step-00000001' && test -s config.json -a -s model.safetensors -a -s optimizer.safetensors -a -s trainer.json"
    is "  ... and no partial checkpoint is left" "$(leftovers "$M"/run/step-00000002* "$M"/run/*.tmp.*)" 0
    cp -r "$M/run" "$T/run"
    ok "  ... it resumes elsewhere" sigma-pretrain -q --data "$T/shards" --out "$T/run" --resume --steps 2

    full 48k
    fails_with "sigma-export on a full disk fails with the reason" 1 "No space left on device" \
        sigma-export -q "$T/run" -o "$M/hf" --dtype fp32
    is "  ... nothing under the final name, no temporary directory" "$(leftovers "$M/hf" "$M"/hf.tmp.*)" 0
    umount "$M"
else
    for n in 1 2 3 4 5 6 7 8 9; do skip "a full disk" "mounting a tmpfs needs root"; done
fi

# ---- a 100 MB single-line document: the memory the man pages state --------------------------------
head -c 100000000 /dev/zero | tr '\0' a >"$T/line"
echo >>"$T/line"
sigma-tokenize train -q --vocab-size 300 --pattern o200k -o "$T/tok" /usr/share/common-licenses/GPL-3
if [ "${SIGMA_SAN:-}" = 1 ]; then
    skip "sigma-tokenize: a 100 MB line" "ASan's own memory"; skip "sigma-dedup: a 100 MB line" "ASan's own memory"
else
    kb=$(command time -f %M sigma-tokenize encode -q --lines -t "$T/tok" "$T/line" 2>&1 >/dev/null)
    ok "sigma-tokenize: a 100 MB line in at most 7 times its size, sigma-tokenize(1) (${kb} KB; it took 1.76 GB)" \
        test "$kb" -lt 700000
    kb=$(command time -f %M sigma-dedup -q --lines "$T/line" 2>&1 >/dev/null)
    ok "sigma-dedup: a 100 MB line in at most 3 times its size, sigma-dedup(1) (${kb} KB)" test "$kb" -lt 300000
fi
done_testing
