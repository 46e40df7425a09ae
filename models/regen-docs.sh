#!/usr/bin/env bash
# models/regen-docs.sh: regenerate every committed doc artefact that depends on the default model
# models/stylebox-a0.25.onnx, after that file has been replaced by a newly trained one
# (models/README.md, "How the steady default replaced the classic one", step 4).
#
# The same set as the last replacement (J7b: commits cef6e92, 3c90d42, d063ec8). Each command
# is copied from the doc that states it (argument order kept: `stylebox flicker` writes its own argv into the "Made by"
# line, `stylebox eval` the --photos path into eval.md):
#   eval-a0.25     README.md "## Evaluation" (2nd block)  -> docs/eval/a0.25/{eval.csv,eval.md,
#                  eval_per_photo.csv,gallery.jpg,blend-candy-starry_night.jpg}
#   flicker-table  docs/flicker.md "## Commands" + "Made by" under <!-- flicker:table:begin -->
#                  -> docs/flicker.md (table), docs/flicker-table.csv, docs/flicker-table-vgg.csv,
#                     docs/flicker.png, docs/flicker-strip.jpg
#   flicker-long   "Made by" under flicker:long   -> docs/flicker.md (long), docs/flicker-long.csv
#   gallery-readme README.md "## Gallery"         -> docs/eval/gallery-readme.jpg
#   flicker-codec  "Made by" under flicker:codec  -> docs/flicker.md (codec), docs/flicker-codec.csv
#   compare-pan    docs/flicker.md, block after steady-pan.webp  -> docs/steady-pan.webp
#   compare-stills docs/flicker.md, same block                   -> docs/steady-compare.jpg
#
# NOT regenerated (other models, or not a pure function of the default file):
#   flicker.md sections stable, stable-codec (models/stylebox-a0.25-stable.onnx: flicker-stable*.csv,
#   flicker-stable.png, flicker-stable-strip.jpg), reference (models/stylebox-a0.25-classic.onnx:
#   flicker-reference.csv); docs/eval/a0.25-stable, docs/eval/alpha.md (the 8-style α family);
#   steady-frontier (docs/flicker-frontier.csv/.png, the table between steady-frontier markers): one
#   row per candidate, rows reused by sha256, so the new model gets its own row by hand
#   (`stylebox steady-frontier ... --model NAME=PATH::COMMAND`), and the rows of the old and the
#   new default are re-pointed (models/README.md steps 1 and 2);
#   bench/frontier/train-bench blocks and live FPS (timings, need a quiet machine).
#   "the strip alone" command of flicker.md is not run: the main-table step writes the same strip.
#
# Time (2-core Xeon, from the docs; run sequentially, slowest first; ~11-12 min in all):
#   eval-a0.25      ~4.5 min  (README: 20 photos x 8 styles at 384² "3 min 28 s"; 10 styles here)
#   flicker-table   174 s     ("Made by" line)
#   flicker-long     61 s     ("Made by" line)
#   gallery-readme  ~1 min    (estimate: 5 photos x 10 styles at 256², no time in the docs)
#   flicker-codec    47 s     ("Made by" line)
#   compare-pan     ~10-30 s  (estimate; ONNX only, no VGG)
#   compare-stills  ~5-15 s   (estimate)
#
# Hand-written numbers of the default model (prose, outside generated markers) to edit after
# a new default ships (line numbers as of the L1 replacement; they drift, so search for the
# numbers):
#   README.md:13        caption: "(10 styles, α = 0.25, 0.66 MB)" (file size)
#   README.md:622-634   the Evaluation table: per-style style/content/ratio of the shipped model,
#                       "mean of the 8" 0.517 / 1.392 / 0.143, shipwreck, woman_with_hat (copy of
#                       docs/eval/a0.25/eval.csv)
#   README.md:637-639   "+2.9 % in style and +2.9 % in content", "starry_night ... +15 % in style",
#                       "1-px-pan flicker of 5.83 grey levels instead of 16.8"
#   README.md:686-691   "12,024 + 9,588 CPU steps", 1-px pan 5.83 (2.9× less; candy 6.2,
#                       starry_night 8.3, udnie 3.0), zoom 7.3, noise 2.61, "2.9 % and 2.9 %",
#                       time cost "+13–20 %" ORT f32, "+3–7 %" OpenVINO (the network's, not the weights')
#   README.md:693-694   carry 0.9 "takes 9 % off ... (1.90 to 1.73)"
#   README.md:826       performance table: "the steady default's low-passes add 13–20 %"
#   docs/flicker.md:98-107   bullet: 5.83 (udnie 3.0, the_scream 4.4, la_muse 7.7, starry_night
#                            8.3), 2-px 6.78, zoom 7.27, rotate 7.05, 4-px pan 0.55
#   docs/flicker.md:108-112  carry: 0.55 → 0.36, 9 % off the moving patch (1.90 → 1.73), style 0.532
#   docs/flicker.md:113-116  noise: 2.61, 1.16× (udnie 1.27, candy 2.06, starry_night 3.32), "the
#                            steady defaults before this one to 2.72 (S1), 2.79 (J7b) and 2.57 (I1)"
#   docs/flicker.md:140-141  long clips: "11 % off the moving patch (1.44 vs 1.61) and 8 % off the 4-px pan"
#   docs/flicker.md:198-202  codec: 93 % (5.10 → 4.75), 80 %, 92 %, 93 %, 76 %, 54 % (1.98 → 1.06),
#                            4-px 0.76 → 0.53, carried 0.44 → 0.30
#   docs/flicker.md:499      bench: "S1 and L1, the default now, are J7b's network" (a new network needs a new bench)
#   docs/flicker.md:543-552  "S1 was the default after J7b" and the L1/L2 bullet ("it is the
#                            default now"): L1's numbers against S1's
#   docs/training.md:421-426 the checkpoint list ("L1 ... the shipped default"), the step to
#                            cool down from (9,588), "it replaced S1 as the default" (L1, L2
#                            paragraph), run table: L1 row in bold
#   docs/frontier.md:60, 246-248 fast model's speed against "J7b, S1 and L1"
#   docs/live.md:201         "J7b, S1 and L1 after it, one network, are 6–12 % slower"
#   models/README.md:7       table row: "12,024 + 9,588 steps", "5.83 grey levels instead of 16.8",
#                            "within 2.9 % of the classic's"; :29-36 the checkpoint list;
#                            :62-66 "run L1 replaced S1"
#   (also outside docs: tests/model/test_shipped_models.py STEADY guard, models/README.md step 3)
# tests/tools/test_docs_numbers.py fails until the README's evaluation table and its flicker
# sentence agree with docs/eval/a0.25/eval.csv and the frontier row of the served file.
#
# Usage: bash models/regen-docs.sh   (from anywhere; logs in runs/regen-logs/STEP.log)

set -euo pipefail
cd "$(dirname "$0")/.."

SB=.venv/bin/stylebox
export STYLEBOX_DATA=../shared/data
PHOTOS=../shared/data/eval-photos   # literal relative path: it is written into eval.md / "Made by"
LOGS=runs/regen-logs
mkdir -p "$LOGS"

step() {  # step NAME COMMAND...: log to runs/regen-logs/NAME.log, stop on failure
    local name=$1; shift
    local log="$LOGS/$name.log" t0=$SECONDS
    echo "$(date '+%F %T') START $name: $*"
    if "$@" >"$log" 2>&1; then
        echo "$(date '+%F %T') done  $name ($((SECONDS - t0)) s)"
    else
        local rc=$?
        echo "$(date '+%F %T') FAILED $name (exit $rc, $((SECONDS - t0)) s); last lines of $log:"
        tail -n 20 "$log"
        exit "$rc"
    fi
}

[ -f models/stylebox-a0.25.onnx ] || { echo "models/stylebox-a0.25.onnx missing" >&2; exit 1; }
echo "$(date '+%F %T') model: $(sha256sum models/stylebox-a0.25.onnx)"

# 1. docs/eval/a0.25 (README.md, ## Evaluation). The README's command relies on --engine auto;
#    the committed eval.md says "run on onnxruntime f32" (what auto gives on an AVX2-only CPU),
#    so it is pinned here, and the numbers do not depend on the CPU's engine.
step eval-a0.25 "$SB" eval --model models/stylebox-a0.25.onnx --photos "$PHOTOS" \
    --out docs/eval/a0.25 --size 384 --tile 128 --set 'content_layers=["relu4_1"]' \
    --styles-dir ../shared/data/styles --blend candy,starry_night --blend-steps 6 --blend-photo 5 \
    --engine onnxruntime --precision f32

# 2. docs/flicker.md main table, flicker-table.csv, flicker-table-vgg.csv, flicker.png, strip
step flicker-table "$SB" flicker "$PHOTOS" --photos 3 --frames 3 --carry 0.9 \
    --engine onnxruntime --precision f32 --report docs/flicker.md \
    --figure docs/flicker.png --strip docs/flicker-strip.jpg

# 3. docs/flicker.md long, flicker-long.csv
step flicker-long "$SB" flicker "$PHOTOS" --photos 2 --frames 16 --styles candy,udnie \
    --motions pan4,object,noise --carry 0.9,0.5 --no-vgg --engine onnxruntime --precision f32 \
    --report docs/flicker.md --section long

# 4. docs/eval/gallery-readme.jpg (README.md, ## Gallery): five photos linked into runs/gallery-photos
gallery_photos() {
    rm -rf runs/gallery-photos runs/gallery
    mkdir -p runs/gallery-photos
    local src p
    src=$(readlink -f "$PHOTOS")
    for p in imagenet_n02088364_beagle imagenet_n03763968_military_uniform jcjohnson_chicago \
             kodak_kodim01 sunhays80_street_sun_bkgpqbvgorkjqzgp; do
        [ -f "$src/$p.jpg" ] || { echo "missing $src/$p.jpg"; return 1; }
        ln -s "$src/$p.jpg" "runs/gallery-photos/$p.jpg"
    done
    "$SB" eval --model models/stylebox-a0.25.onnx --photos runs/gallery-photos --out runs/gallery \
        --size 256 --tile 160 --styles-dir ../shared/data/styles --engine onnxruntime --precision f32
    cp runs/gallery/gallery.jpg docs/eval/gallery-readme.jpg
}
step gallery-readme gallery_photos

# 5. docs/flicker.md codec, flicker-codec.csv
step flicker-codec "$SB" flicker "$PHOTOS" --photos 2 --frames 3 --styles candy,mosaic,udnie \
    --carry 0.9,0.5 --codec h264 --no-vgg --engine onnxruntime --precision f32 \
    --report docs/flicker.md --section codec

# 6-7. docs/steady-pan.webp, docs/steady-compare.jpg (docs/flicker.md, Steady and sharp)
step compare-pan "$SB" compare ../shared/data/eval-photos/kodak_kodim01.jpg \
    --model classic=models/stylebox-a0.25-classic.onnx --model steady=models/stylebox-a0.25.onnx \
    --styles candy,starry_night,mosaic --size 192 --pan 6 -o docs/steady-pan.webp
step compare-stills "$SB" compare ../shared/data/eval-photos/sunhays80_street_sun_bkgpqbvgorkjqzgp.jpg \
    ../shared/data/eval-photos/imagenet_n02088364_beagle.jpg \
    --model classic=models/stylebox-a0.25-classic.onnx --model steady=models/stylebox-a0.25.onnx \
    --styles candy,starry_night,la_muse --size 224 -o docs/steady-compare.jpg

echo "$(date '+%F %T') all done. Now: look at the pictures, then hand-edit the prose listed at the top of models/regen-docs.sh"
git status --short
