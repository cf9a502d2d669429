#!/usr/bin/env bash
# Renders assets/plot-font.png: printable ASCII (32..126) in DejaVu Sans Mono at 13 px, one
# 8 x 15 grey cell per character in a row, baseline at y = 11. sweep.png's labels are drawn
# from it (run::sweep::plot). Needs ImageMagick and the DejaVu fonts.
set -euo pipefail
font=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
dir=$(mktemp -d)
for c in $(seq 32 126); do
  ch=$(printf "\\$(printf %o "$c")")
  case "$ch" in
    "'") esc="\\'" ;;
    "\\") esc='\\\\' ;;
    *) esc="$ch" ;;
  esac
  convert -size 8x15 xc:black -density 72 -font "$font" -pointsize 13 -fill white \
    -draw "text 0,11 '$esc'" -colorspace Gray "$dir/g$(printf %03d "$c").png"
done
convert "$dir"/g*.png +append -colorspace Gray -depth 8 -strip "$(dirname "$0")/../assets/plot-font.png"
rm -r "$dir"
