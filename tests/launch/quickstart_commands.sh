#!/bin/sh
# Every command `hllm --help` names is built by the quickstart's target (quickstart_tools) and answers --help
# (issue 22: after the quickstart, `hllm convert --help` printed "unknown command 'convert'").
# Usage: quickstart_commands.sh BUILD_DIR BIN_DIR
set -eu
build="$1"
bin="$2"
fail() { echo "FAIL: $*"; exit 1; }
deps=$(ninja -C "$build" -t query quickstart_tools) || fail "ninja cannot query quickstart_tools"
cmds=$("$bin/hllm" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$cmds" ] || fail "hllm --help lists no commands"
n=0
for c in $cmds; do
  echo "$deps" | grep -q "bin/hllm-$c\$" || fail "quickstart_tools does not build hllm-$c (add it in CMakeLists.txt)"
  "$bin/hllm" "$c" --help >/dev/null 2>&1 || fail "hllm $c --help failed"
  n=$((n + 1))
done
echo "ok: $n commands, each built by quickstart_tools and answering --help"
