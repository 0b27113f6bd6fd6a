#!/usr/bin/env bash
# Runs every command that README.md, docs/operations.md and docs/data.md show a user, as written, on a tiny dataset
# in a temporary folder, and fails naming the doc, the line and the command when one does not work (issue 22).
#
# The marker. Every ```sh fenced block of these docs is preceded by one HTML comment line (invisible when rendered):
#   <!-- docs-run -->              each command of the block runs and must exit with status 0
#   <!-- docs-run: new-job -->     the same, with JOB a new, empty job directory (e.g. `hllm launch`, which refuses a
#                                  directory that holds a run)
#   <!-- docs-run: skip WHY -->    not run here, counted as skipped; WHY starts with the kind: `slurm`, `ssh`, `gpu`
#                                  (their own tests run them: tests/cluster, `ctest -L gpu`) or `long` (the quickstart,
#                                  the whole suite, a second build tree, the crash test), then the reason
# Other fenced blocks (```python, ```text, ```yaml, plain ```) may carry the marker too (python: skip only); an sh
# block without one is a failure, so a new command cannot escape the test.
#
# How a block runs: lines joined at a trailing backslash; blank lines and `# comment` lines dropped; a trailing
# ` # comment` dropped; optional parts in [brackets] (`[--set section.key=value ...]`) left out; every command in
# its own `bash -c`, in the doc's own fresh working folder, in document order (a later block may use what an earlier
# one wrote). `build/bin/hllm` there is the build's bin folder (a link); `hllm` alone is not on PATH. Placeholders
# (whole words, in run blocks only):
#   DIR -> the tiny prepared dataset (tests/launch/make_tiny_dataset.sh)      JOB -> job (or job-N for new-job)
#   NAME -> the name in JOB/checkpoints/latest      /path/to/llama/tokenizer.model -> the tiny dataset's model
#   alice -> the first user of the tiny data
# Files the docs name are put in each working folder: interactions.csv, items.csv (the tiny synthetic CSVs),
# Pixel1M.csv and Pixel1M_item_info.csv, amazon/ (ratings_Books.csv, meta_Books.json), ml-25m/ (ratings.csv,
# movies.csv): the converters' test inputs (tests/storage/data/convert), in the published layouts.
#
# HLLM_DOCS_FAST=1 appends `--set baseline.epochs=1 --set stage1.epochs=1 --set stage2.epochs=1` to every
# `hllm train` command (and to the train options of `hllm launch ... --`), so the test is quick on 2 shared cores;
# the commands are then not strictly as written (only the epoch counts differ). ctest sets it; HLLM_DOCS_FAST=0 (the
# default when run by hand) runs them exactly as written. HLLM_DOCS_TIMEOUT: seconds per command (default 300).
# HLLM_DOCS_KEEP=1 keeps the temporary folder.
#
# Usage: docs_commands.sh SOURCE_DIR BIN_DIR
# Last, launch/readme_results --print on the finished job (README.md's results block and its markers).
# Prints one line per command (ok/FAIL doc:line), then `docs commands: N run, N skipped (...), N failed`.
set -uo pipefail
src="$(cd "${1:?usage: docs_commands.sh SOURCE_DIR BIN_DIR}" && pwd)"
bin="$(cd "${2:?usage: docs_commands.sh SOURCE_DIR BIN_DIR}" && pwd)"
docs=(README.md docs/data.md docs/operations.md)
fast="${HLLM_DOCS_FAST:-0}"
per_command_timeout="${HLLM_DOCS_TIMEOUT:-300}"
fast_sets=" --set baseline.epochs=1 --set stage1.epochs=1 --set stage2.epochs=1"

for f in "${docs[@]}"; do [ -f "$src/$f" ] || { echo "FAIL: $src/$f does not exist"; exit 1; }; done
[ -x "$bin/hllm" ] || { echo "FAIL: $bin/hllm is not an executable (build the quickstart_tools target)"; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/hllm-docs.XXXXXX")"
cleanup() { if [ "${HLLM_DOCS_KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

# The tiny dataset (DIR) and its CSVs.
if ! HLLM_BIN="$bin" "$src/tests/launch/make_tiny_dataset.sh" "$tmp/tiny" >"$tmp/tiny.log" 2>&1; then
  echo "FAIL: make_tiny_dataset.sh failed:"; tail -20 "$tmp/tiny.log"; exit 1
fi
data="$tmp/tiny/prepared"
user="$(sed -n 2p "$tmp/tiny/csv/interactions.csv" | cut -d, -f2)"
convert_data="$src/tests/storage/data/convert"

# A fresh working folder for one doc, holding the files the docs name.
make_workdir() {
  local w="$1"
  mkdir -p "$w/build" "$w/amazon" "$w/ml-25m"
  ln -s "$bin" "$w/build/bin"
  cp "$tmp/tiny/csv/interactions.csv" "$tmp/tiny/csv/items.csv" "$w/"
  cp "$convert_data/pixelrec/interactions.csv" "$w/Pixel1M.csv"
  cp "$convert_data/pixelrec/item_info.csv" "$w/Pixel1M_item_info.csv"
  cp "$convert_data/amazon/ratings_Books.csv" "$convert_data/amazon/meta_Books.json" "$w/amazon/"
  cp "$convert_data/ml-latest-small/ratings.csv" "$convert_data/ml-latest-small/movies.csv" "$w/ml-25m/"
}

# substitute COMMAND JOBDIR WORKDIR: the command as it runs.
substitute() {
  local c="$1" job="$2" w="$3" latest=""
  [ -f "$w/$job/checkpoints/latest" ] && latest="$(tr -d '\n' <"$w/$job/checkpoints/latest")"
  c="$(printf '%s' "$c" | sed -E 's/[[:space:]]+#[[:space:]].*$//; s/[[:space:]]+\[[^]"'"'"']*\]//g')"
  c="$(printf '%s' "$c" | sed -E "s#/path/to/llama/tokenizer\\.model#$data/tokenizer.model#g; \
    s#\\<DIR\\>#$data#g; s#\\<JOB\\>#$job#g; s#\\<alice\\>#$user#g; s#\\<NAME\\>#${latest:-NAME}#g")"
  if [ "$fast" = 1 ] && printf '%s' "$c" | grep -qE '(^|[[:space:]/])hllm(-train)? train[[:space:]]|hllm launch .* -- '; then
    c="$c$fast_sets"
  fi
  printf '%s' "$c"
}

run_count=0; skip_count=0; fail_count=0; job_count=0
declare -A skip_kinds=()
failures=()

run_command() {  # DOC LINE AS_WRITTEN JOBDIR WORKDIR
  local doc="$1" line="$2" written="$3" job="$4" w="$5" cmd rc
  cmd="$(substitute "$written" "$job" "$w")"
  run_count=$((run_count + 1))
  local log="$tmp/cmd-$run_count.log" t0=$SECONDS
  (cd "$w" && timeout "$per_command_timeout" bash -c "$cmd") >"$log" 2>&1 </dev/null
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "ok   $doc:$line ($((SECONDS - t0)) s): $written"
    return
  fi
  fail_count=$((fail_count + 1))
  failures+=("$doc:$line: $written")
  echo "FAIL $doc:$line: the command does not work as written: $written"
  [ "$cmd" != "$written" ] && echo "     ran (placeholders substituted): $cmd"
  if [ $rc -eq 124 ]; then echo "     timed out after $per_command_timeout s"; else echo "     exit status $rc"; fi
  echo "     its last output lines:"; tail -15 "$log" | sed 's/^/     | /'
}

for doc in "${docs[@]}"; do
  w="$tmp/work-$(basename "$doc" .md)"
  make_workdir "$w"
  marker=""; marker_line=0; in_block=0; block_lang=""; block_mode=""; job="job"
  pending=""; pending_line=0; n=0
  while IFS= read -r l || [ -n "$l" ]; do
    n=$((n + 1))
    if [ $in_block = 0 ]; then
      if [[ "$l" =~ ^'<!-- docs-run'(:[[:space:]]*(.*[^[:space:]]))?[[:space:]]*'-->'$ ]]; then
        marker="run${BASH_REMATCH[2]:+:${BASH_REMATCH[2]}}"; marker_line=$n; continue
      fi
      if [[ "$l" =~ ^'```'([a-z]*) ]]; then
        in_block=1; block_lang="${BASH_REMATCH[1]}"; block_mode=""
        case "$block_lang" in sh|bash|shell|console) is_sh=1 ;; *) is_sh=0 ;; esac
        if [ -n "$marker" ] && [ $marker_line -eq $((n - 1)) ]; then
          case "$marker" in
            run) block_mode=run; job="job" ;;
            run:new-job) block_mode=run; job_count=$((job_count + 1)); job="job-$job_count" ;;
            run:skip\ *)
              block_mode=skip
              kind="${marker#run:skip }"; kind="${kind%% *}"; kind="${kind%:}"
              skip_kinds[$kind]=$(( ${skip_kinds[$kind]:-0} + 1 ))
              skip_count=$((skip_count + 1))
              echo "skip $doc:$n: a block of $(awk -v s=$n 'NR > s && /^```/ {print NR - s - 1; exit}' "$src/$doc") lines (${marker#run:skip })" ;;
            *) echo "FAIL $doc:$marker_line: unknown marker '<!-- docs-run: ${marker#run:} -->' (known: docs-run, docs-run: new-job, docs-run: skip KIND: why)"
               fail_count=$((fail_count + 1)); failures+=("$doc:$marker_line: unknown marker"); block_mode=skip ;;
          esac
          if [ "$block_mode" = run ] && [ $is_sh = 0 ]; then
            echo "FAIL $doc:$marker_line: only sh blocks run; a ${block_lang:-plain} block can only be skipped"
            fail_count=$((fail_count + 1)); failures+=("$doc:$marker_line: run marker on a ${block_lang:-plain} block")
            block_mode=skip
          fi
        elif [ $is_sh = 1 ]; then
          echo "FAIL $doc:$n: a \`\`\`$block_lang block without a <!-- docs-run ... --> marker on the line above"
          fail_count=$((fail_count + 1)); failures+=("$doc:$n: unmarked $block_lang block"); block_mode=skip
        fi
        marker=""
        continue
      fi
      [ -n "$marker" ] && [ $marker_line -eq $((n - 1)) ] && {
        echo "FAIL $doc:$marker_line: a docs-run marker not followed by a fenced block"
        fail_count=$((fail_count + 1)); failures+=("$doc:$marker_line: marker without a block"); marker=""; }
      continue
    fi
    # inside a block
    if [[ "$l" =~ ^'```' ]]; then
      in_block=0
      [ -n "$pending" ] && { echo "FAIL $doc:$pending_line: a command ends in a backslash at the end of its block"
        fail_count=$((fail_count + 1)); failures+=("$doc:$pending_line: dangling backslash"); pending=""; }
      continue
    fi
    [ "$block_mode" = run ] || continue
    if [ -z "$pending" ]; then
      [[ "$l" =~ ^[[:space:]]*(#.*)?$ ]] && continue
      pending_line=$n
    fi
    if [[ "$l" =~ \\$ ]]; then pending+="${l%\\} "; continue; fi
    pending+="$l"
    pending="$(printf '%s' "$pending" | tr -s ' ')"
    run_command "$doc" "$pending_line" "$pending" "$job" "$w"
    pending=""
  done <"$src/$doc"
  [ $in_block = 1 ] && { echo "FAIL $doc: a fenced block is not closed"; fail_count=$((fail_count + 1)); failures+=("$doc: unclosed block"); }
done

# README.md's measured block: launch/readme_results finds its markers and writes it from a finished job (the one
# docs/operations.md's commands trained), without touching README.md (--print).
rr_job="$tmp/work-operations/job"
if [ -f "$rr_job/results.md" ]; then
  run_count=$((run_count + 1))
  if "$src/launch/readme_results" --job "$rr_job" --print >"$tmp/readme_results.log" 2>&1 &&
     grep -q '^| hllm-stage2 | cold |' "$tmp/readme_results.log"; then
    echo "ok   README.md results block: launch/readme_results --job JOB --print"
  else
    fail_count=$((fail_count + 1)); failures+=("README.md: launch/readme_results --job JOB --print")
    echo "FAIL README.md results block: launch/readme_results --job JOB --print:"; tail -15 "$tmp/readme_results.log" | sed 's/^/     | /'
  fi
else
  fail_count=$((fail_count + 1)); failures+=("docs/operations.md: no finished job for launch/readme_results")
  echo "FAIL docs/operations.md's commands left no finished job ($rr_job/results.md) to test launch/readme_results on"
fi

kinds=""
for k in $(printf '%s\n' "${!skip_kinds[@]}" | sort); do kinds+="${kinds:+, }$k ${skip_kinds[$k]}"; done
echo
[ "$fast" = 1 ] && echo "(HLLM_DOCS_FAST=1: hllm train commands ran with$fast_sets)"
echo "docs commands: $run_count run, $skip_count blocks skipped${kinds:+ ($kinds)}, $fail_count failed"
if [ $fail_count -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
