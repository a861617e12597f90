# Sourced by env_torch.sh and env_oneflow.sh: find a given Python, and tell whether a venv
# is up to date with its inputs (a stamp of their contents), so a second run does nothing.

# find_python X.Y: print the path of a Python X.Y (on PATH first, then under pyenv).
find_python() {
  local want=$1 c
  for c in "python$want" python3; do
    if command -v "$c" >/dev/null 2>&1 \
      && "$c" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$want')" 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/"$want".*/bin/python; do
      [ -x "$c" ] && { echo "$c"; return 0; }
    done
  fi
  return 1
}

# venv_is_current VENV FILE...: true when VENV exists and was built from these files as
# they are now; sets STAMP for write_stamp.
venv_is_current() {
  local venv=$1; shift
  STAMP=$(cat "$@" | sha256sum | cut -d' ' -f1)
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.multilr-stamp" 2>/dev/null)" = "$STAMP" ]
}

write_stamp() { echo "$STAMP" > "$1/.multilr-stamp"; }

# pip_quiet VENV ARGS...: pip install, without the noise of this machine's wheel mirrors.
pip_quiet() {
  local venv=$1; shift
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 \
    | grep -v -E "^WARNING: Location|DEPRECATION|legacy 'setup.py install'" >&2 || true
}
