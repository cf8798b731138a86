# Set-up shared by scripts/demo.sh and scripts/test.sh (SPEC §16): find what a fresh Debian/Ubuntu
# machine with only a Rust toolchain lacks, install it when we can (root, or passwordless sudo),
# otherwise stop at once naming the packages and the exact command. Sourced from the repo root.
# Every check is a `command -v` or a tiny compile, so an already set-up machine passes in well
# under a second; the Python and Node steps are skipped while their stamp files are current.

SETUP_APT=()     # Debian package names to install
SETUP_ERRORS=()  # problems apt cannot fix (the Rust toolchain)

setup_need() { # setup_need COMMAND PACKAGE... : the packages when COMMAND is not on PATH
  command -v "$1" >/dev/null 2>&1 || SETUP_APT+=("${@:2}")
}

setup_check_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    SETUP_ERRORS+=("cargo is missing: install Rust 1.85+ with rustup (https://rustup.rs):
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (then open a new shell)")
  fi
}

# What the build needs (Pingora's libz-ng-sys runs cmake, which drives make and the C compiler;
# ring, zstd-sys and mimalloc compile C with cc; rustc links through cc). pkg-config is not
# needed: zstd-sys only consults it with its `pkg-config` feature, which is off.
setup_check_build() {
  setup_check_rust
  setup_need cmake cmake
  setup_need make make
  if ! command -v cc >/dev/null 2>&1; then
    SETUP_APT+=(gcc libc6-dev)
  else # a compiler without the C library headers/startup files (libc6-dev) cannot build or link
    local dir
    dir=$(mktemp -d)
    printf '#include <stdio.h>\nint main(void) { return 0; }\n' >"$dir/t.c"
    cc "$dir/t.c" -o "$dir/t" >/dev/null 2>&1 || SETUP_APT+=(libc6-dev)
    rm -rf "$dir"
  fi
}

# What the tests need besides the build (see tests/py): redis for the cache/rate-limit tests,
# openssl for test certificates, Chromium for the CORS test, Node for the Vercel AI SDK test,
# Python 3 with venv for the project-local .venv the Python tests run in.
setup_check_tests() {
  setup_check_build
  setup_need redis-server redis-server
  setup_need redis-cli redis-tools
  setup_need openssl openssl
  if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
    SETUP_APT+=(chromium)
  fi
  setup_need node nodejs
  setup_need npm npm
  if ! command -v python3 >/dev/null 2>&1; then
    SETUP_APT+=(python3 python3-venv)
  elif [ ! -x .venv/bin/python ] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    SETUP_APT+=(python3-venv) # Debian ships venv's ensurepip separately
  fi
}

# Install SETUP_APT (root or `sudo -n`), or stop naming them and the command; stop on SETUP_ERRORS.
setup_install() {
  local pkgs=() seen=" " p
  for p in "${SETUP_APT[@]}"; do
    case "$seen" in *" $p "*) ;; *) pkgs+=("$p"); seen+="$p " ;; esac
  done
  local cmd="apt-get install -y --no-install-recommends ${pkgs[*]}"
  local sudo=()
  if [ ${#pkgs[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then sudo=(sudo -n); fi
  fi
  local can_install=0
  if [ ${#pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 \
    && { [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
    can_install=1
  fi
  if [ $can_install -eq 1 ]; then
    echo "== installing ${pkgs[*]} (${sudo[*]:+${sudo[*]} }$cmd)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    pkgs=()
  fi
  if [ ${#SETUP_ERRORS[@]} -gt 0 ] || [ ${#pkgs[@]} -gt 0 ]; then
    echo "error: $SETUP_WHAT cannot start: this machine lacks what it needs." >&2
    for p in "${SETUP_ERRORS[@]}"; do echo "  - $p" >&2; done
    if [ ${#pkgs[@]} -gt 0 ]; then
      echo "  - missing packages: ${pkgs[*]}" >&2
      if ! command -v apt-get >/dev/null 2>&1; then
        echo "    no apt-get here: install their equivalents with your package manager; on Debian/Ubuntu:" >&2
      else
        echo "    not root and no passwordless sudo, so install them yourself:" >&2
      fi
      echo "      sudo apt-get update && sudo $cmd" >&2
    fi
    echo "  then run \`$SETUP_RERUN\` again." >&2
    exit 1
  fi
}

# rustfmt and clippy (test.sh lints with them): a rustup `minimal` profile lacks them; rustup adds
# them without root.
setup_rust_components() {
  local want=()
  cargo fmt --version >/dev/null 2>&1 || want+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || want+=(clippy)
  [ ${#want[@]} -eq 0 ] && return 0
  if command -v rustup >/dev/null 2>&1; then
    echo "== rustup component add ${want[*]}"
    rustup component add "${want[@]}"
  else
    echo "error: cargo lacks ${want[*]} and there is no rustup to add them: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
  fi
}

# The Python packages go into the project-local .venv (gitignored), never the system interpreter.
# .venv/.requirements.sha256 holds the hash of the requirement files last installed: pip runs
# only when they change (or the venv is new).
setup_python_venv() {
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c '' >/dev/null 2>&1; then
    echo "== python3 -m venv .venv"
    rm -rf .venv
    python3 -m venv .venv
  fi
  local want have
  want=$(cat tests/py/requirements*.txt | sha256sum | cut -d' ' -f1)
  have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "== pip install -r tests/py/requirements.txt (into .venv)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/py/requirements.txt
    echo "$want" >.venv/.requirements.sha256
  fi
}

# The Vercel AI SDK for tests/py/test_vercel_ai_sdk.py, exactly as locked: `npm ci` only when
# node_modules is missing or package-lock.json changed since (tests/node/node_modules/.lock.sha256).
setup_node_modules() {
  local want have
  want=$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)
  have=$(cat tests/node/node_modules/.lock.sha256 2>/dev/null || true)
  if [ ! -d tests/node/node_modules ] || [ "$want" != "$have" ]; then
    echo "== npm ci --prefix tests/node"
    npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
    echo "$want" >tests/node/node_modules/.lock.sha256
  fi
}
