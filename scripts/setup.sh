# Shared set-up for scripts/demo and scripts/test (sourced, not run): the Fashion-MNIST data,
# a virtual environment in .venv, and rsrouter installed into it (editable). Safe to rerun.
# Usage: SETUP_EXTRA=dev . scripts/setup.sh   (SETUP_EXTRA: "dev" for the test tools). A variable,
# not an argument: a sourced script would see the caller's own arguments as its $1.

fmnist=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist/t10k-images-idx3-ubyte.gz" ] && [ -z "${RSROUTER_DATA:-}" ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
      || echo "setup: could not install dataset-fashion-mnist; set RSROUTER_DATA to a folder with the Fashion-MNIST files" >&2
  else
    echo "setup: no apt-get here; set RSROUTER_DATA to a folder with the Fashion-MNIST IDX files" >&2
  fi
fi

# The test suite renders the leaderboard in a real headless browser: Debian's chromium.
if [ "${SETUP_EXTRA:-}" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing chromium (Debian package) for the browser test"
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; } \
    || echo "setup: could not install chromium; the leaderboard browser test will fail" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
extra="${SETUP_EXTRA:-}"
spec="."
[ -n "$extra" ] && spec=".[$extra]"
echo "setup: installing rsrouter${extra:+[$extra]} into .venv (first time: torch, a few minutes)"
python -m pip install -q --disable-pip-version-check -e "$spec"
