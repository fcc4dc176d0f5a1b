# Shared by scripts/setup.sh and the steps in scripts/setup.d/ (sourced).

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

# apt_ensure PKG…: installs the Debian packages not installed yet; sets
# APT_UPDATED=1 when it had to refresh the package lists.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  APT_UPDATED=1
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
