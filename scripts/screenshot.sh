#!/usr/bin/env bash
# Take a headless Chromium screenshot of a bench report, to look at the
# page as a reader would:
#
#   bash scripts/screenshot.sh [REPORT_DIR] [OUT.png] [WIDTH] [HEIGHT]
#
# Defaults: tcplab-report, REPORT_DIR/screenshot.png, 1400, 4000 (px; the
# page below HEIGHT is cut off). It needs Debian's chromium package
# (apt-get install chromium); without it, it says so and exits 0. CI does
# not run it.
set -euo pipefail
dir=${1:-tcplab-report}
out=${2:-$dir/screenshot.png}
width=${3:-1400}
height=${4:-4000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
	echo "screenshot: skipped: no chromium here (apt-get install chromium)" >&2
	exit 0
fi
if [[ ! -f $dir/index.html ]]; then
	echo "screenshot: no $dir/index.html: run tcplab bench first" >&2
	exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$profile" --hide-scrollbars --window-size="$width,$height" \
	--screenshot="$(realpath -m "$out")" "file://$(realpath "$dir/index.html")" >/dev/null 2>&1
[[ -s $out ]] || { echo "screenshot: chromium wrote no $out" >&2; exit 1; }
echo "screenshot: $out ($width x $height px)"
