#!/usr/bin/env bash
# Fetches the external test body the safepoint rewriter is proven against:
# the WebAssembly spec-test scripts (.wast) carried in Debian's binaryen
# source package (bookworm, binaryen 108, directory test/spec, Apache-2.0),
# converted to JSON commands plus .wasm modules by Debian's wast2json (wabt).
#
#   scripts/fetch-spec-corpus.sh [DEST]     (default .cache/spec-corpus)
#
# Only Debian's archive is used (a private apt state directory, so the
# machine's apt configuration is not touched). Safe to run again: it does
# nothing when DEST already holds the converted corpus.
set -euo pipefail
# Say where it stopped: a failure under set -e is otherwise silent.
trap 'echo "spec corpus: failed at line $LINENO (exit $?): $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
dest=${1:-.cache/spec-corpus}
version=108-1
if [[ -f "$dest/corpus.json" ]]; then
  echo "spec corpus: already in $dest"
  exit 0
fi
if ! command -v wast2json >/dev/null 2>&1; then
  echo "spec corpus: installing wabt (wast2json) from Debian" >&2
  apt-get install -y -qq --no-install-recommends wabt >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
cat >"$work/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::sourcelist=$work/src.sources" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
echo "spec corpus: fetching Debian source package binaryen $version" >&2
# The archive is on the network: try a few times before giving up.
fetched=0
for attempt in 1 2 3 4; do
  if apt-get "${apt_opts[@]}" -qq update \
    && (cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only "binaryen=$version" >/dev/null); then
    fetched=1
    break
  fi
  echo "spec corpus: download attempt $attempt failed; retrying" >&2
  sleep $((attempt * 5))
done
if [[ $fetched != 1 ]]; then
  echo "spec corpus: could not download binaryen $version from deb.debian.org" >&2
  exit 1
fi
mkdir -p "$work/src"
tar -xzf "$work"/binaryen_108.orig.tar.gz -C "$work/src" --wildcards '*/test/spec/*.wast' '*/test/spec/LICENSE'
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/json"
cp "$work"/src/*/test/spec/LICENSE "$dest.tmp/LICENSE"
converted=0
skipped=()
for wast in "$work"/src/*/test/spec/*.wast; do
  name=$(basename "$wast" .wast)
  if err=$(wast2json --enable-all -o "$dest.tmp/json/$name.json" "$wast" 2>&1); then
    converted=$((converted + 1))
  else
    reason=$(printf '%s' "$err" | head -1 | sed 's/^[^:]*:[0-9]*:[0-9]*: //; s/[\\"]/ /g')
    skipped+=("{\"file\":\"$name.wast\",\"reason\":\"$reason\"}")
  fi
done
total=$(ls "$work"/src/*/test/spec/*.wast | wc -l)
{
  printf '{"source":"Debian source package binaryen %s (bookworm), test/spec","license":"Apache-2.0 (LICENSE)",' "$version"
  printf '"converter":"wast2json %s --enable-all","files":%d,"converted":%d,"skipped":[%s]}\n' \
    "$(wast2json --version)" "$total" "$converted" "$(IFS=,; echo "${skipped[*]:-}")"
} >"$dest.tmp/corpus.json"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "spec corpus: $converted of $total scripts converted into $dest (the rest are listed in corpus.json)" >&2
