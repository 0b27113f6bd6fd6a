# Shared steps of ./launch/quickstart and ./launch/test. Sourced, not executed.
# Every step prints what it does; failures stop the calling script (set -e there).

HLLM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HLLM_BUILD_DIR="${HLLM_BUILD_DIR:-$HLLM_ROOT/build}"
HLLM_JOBS="${HLLM_JOBS:-$(nproc)}"

# Debian packages (STACK.md), in one place. HLLM_PACKAGES: what the build and the quickstart's programs need (the
# test and benchmark libraries are here too: the one configure step finds them, and this machine kind has them
# preinstalled). HLLM_TEST_PACKAGES: only the tests use them (a real browser, promtool, a Slurm cluster, sshd,
# network namespaces, clang's sanitizer runtime); ./launch/test installs both lists, ./launch/quickstart the first.
HLLM_PACKAGES=(
  g++ cmake ninja-build ccache pkg-config git
  libcaf-dev
  libtorch-dev libopenblas0-openmp libgloo-dev
  libcapnp-dev capnproto
  libzmq3-dev cppzmq-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libsentencepiece-dev
  libxxhash-dev libzstd-dev
  libcpp-httplib-dev
  libhnswlib-dev
)
HLLM_TEST_PACKAGES=(
  prometheus chromium chromium-driver
  clang libclang-rt-14-dev
  slurm-wlm munge iproute2 openssh-server openssh-client
)

hllm_phase_start=0
phase() {
  hllm_phase_start=$(date +%s)
  printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"
}
phase_done() {
  printf '    done in %ss\n' "$(( $(date +%s) - hllm_phase_start ))"
}

# ensure_packages [test]: installs what is missing of HLLM_PACKAGES (and of HLLM_TEST_PACKAGES with `test`).
ensure_packages() {
  local wanted=("${HLLM_PACKAGES[@]}")
  if [ "${1:-}" = test ]; then wanted+=("${HLLM_TEST_PACKAGES[@]}"); fi
  phase "checking Debian packages (${#wanted[@]}${1:+, with the test-only ones})"
  local missing=()
  local p
  for p in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "    all present"
    phase_done
    return 0
  fi
  echo "    missing: ${missing[*]}"
  local line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "    not root: install them with"
    echo "      sudo apt-get update && sudo $line"
    echo "    then run this command again."
    exit 1
  fi
  echo "    installing: $line"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive $line
  phase_done
}

# configure_and_build [TARGET...]: configures $HLLM_BUILD_DIR once, then builds the given targets (default: all;
# ./launch/quickstart passes quickstart_tools, ./launch/test builds everything).
configure_and_build() {
  phase "configuring ($HLLM_BUILD_DIR)"
  if [ ! -f "$HLLM_BUILD_DIR/build.ninja" ]; then
    cmake -S "$HLLM_ROOT" -B "$HLLM_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  else
    echo "    already configured"
  fi
  phase_done
  local what="everything"
  local targets=()
  if [ $# -gt 0 ]; then what="$*"; targets=(--target "$@"); fi
  phase "building $what with $HLLM_JOBS jobs (ninja prints [done/total])"
  # One heavy build at a time on this machine: serialize concurrent builds of the same tree.
  flock "$HLLM_BUILD_DIR/.build.lock" cmake --build "$HLLM_BUILD_DIR" -j "$HLLM_JOBS" "${targets[@]}"
  phase_done
}
