#!/bin/sh
# The front: sigma CMD runs sigma-CMD from beside itself or from PATH.
. "$(dirname "$0")/lib.sh"

ok "--version" sh -c 'sigma --version | grep -qx "sigma [0-9.]*"'
ok "help lists the tools with a line each" sh -c 'sigma help | grep -q "^  shard  *write a token stream"'
is "CMD runs sigma-CMD beside sigma" "$(sigma shard --version)" "$(sigma-shard --version)"
ok "help lists the tools, all found here" sh -c '! sigma help | grep -qE "\*|not installed|planned"'
ok "help lists sft" sh -c 'sigma help | grep -q "^  sft  *fine-tune a checkpoint on chat data"'
ok "help CMD is CMD --help" sh -c 'sigma help shard | grep -q "usage: sigma-shard"'
fails_with "an unknown command is a usage error" 2 "not a sigma command" sigma frobnicate
fails_with "no command: usage on stderr, exit 2" 2 "usage: sigma CMD" sigma
mkdir "$T/alone" "$T/path"
cp "$SIGMA_BIN/sigma" "$T/alone/"
cat >"$T/path/sigma-hello" <<'SH'
#!/bin/sh
echo "hello $*"
SH
chmod +x "$T/path/sigma-hello"
is "CMD found on PATH when not beside sigma" "$(PATH="$T/path:$PATH" "$T/alone/sigma" hello a b)" "hello a b"
is "exit status passes through" "$(sigma shard --level 99 -o x 2>/dev/null; echo $?)" 2
tokgen random --tokens 1000 --vocab 300 >"$T/s.tok"
sigma shard -o "$T/set" "$T/s.tok" 2>"$T/err"
ok "a summary line on stderr by default" grep -q "1000 tokens" "$T/err"
rm -rf "$T/set"; sigma shard -q -o "$T/set" --val-fraction 0 "$T/s.tok" 2>"$T/err"
ok "-q is silent" test ! -s "$T/err"
done_testing
