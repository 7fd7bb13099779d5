# Shared set-up for scripts/demo and scripts/test (sourced, not run): the Fashion-MNIST data,
# a virtual environment in .venv, and rsrouter installed into it (editable). Safe to rerun.
# Usage: . scripts/setup.sh [EXTRA]   (EXTRA: "dev" for the test tools)

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

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
spec="."
[ -n "${1:-}" ] && spec=".[$1]"
echo "setup: installing rsrouter${1:+[$1]} into .venv (first time: torch, a few minutes)"
python -m pip install -q --disable-pip-version-check -e "$spec"
