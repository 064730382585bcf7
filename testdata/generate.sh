#!/usr/bin/env bash
# Regenerates the test streams in this folder with ffmpeg (Debian's 5.1).
# Each stream is 3 s of a 160x120 test pattern at 25 fps with a keyframe
# every 25 frames, and/or a 440 Hz tone. The exact command of each file is
# below; run from this folder.
set -euo pipefail
cd "$(dirname "$0")"
V="-f lavfi -i testsrc2=size=160x120:rate=25"
A="-f lavfi -i sine=frequency=440:sample_rate=48000"
G="-hide_banner -loglevel error -y"
OUT="-t 3 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1"
X264="-c:v libx264 -preset veryfast -profile:v high -bf 2 -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p"
X265="-c:v libx265 -preset veryfast -g 25 -x265-params bframes=2:keyint=25:min-keyint=25:scenecut=0:log-level=error -pix_fmt yuv420p"

# H.264 (High, 2 B-frames) + AAC-LC 48 kHz stereo in MPEG-TS and FLV; raw H.264 Annex B.
ffmpeg $G $V $A $OUT $X264 -c:a aac -b:a 64k -ac 2 -f mpegts h264_aac.ts
ffmpeg $G $V $A $OUT $X264 -c:a aac -b:a 64k -ac 2 -f flv h264_aac.flv
ffmpeg $G $V $OUT $X264 -f h264 h264.h264
# H.265 (Main, 2 B-frames) + AAC in MPEG-TS; raw H.265 Annex B.
ffmpeg $G $V $A $OUT $X265 -c:a aac -b:a 64k -ac 2 -f mpegts hevc_aac.ts
ffmpeg $G $V $OUT $X265 -f hevc hevc.hevc
# AV1 (SVT-AV1) and VP9 (libvpx) in IVF.
ffmpeg $G $V $OUT -c:v libsvtav1 -preset 12 -g 25 -pix_fmt yuv420p -f ivf av1.ivf
ffmpeg $G $V $OUT -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 25 -pix_fmt yuv420p -f ivf vp9.ivf
# Audio: AAC-LC in ADTS (44.1 kHz mono), Opus 48 kHz stereo in MPEG-TS.
ffmpeg $G -f lavfi -i sine=frequency=440:sample_rate=44100 $OUT -c:a aac -b:a 48k -ac 1 -f adts aac_44100_mono.aac
ffmpeg $G $A $OUT -c:a libopus -b:a 64k -ac 2 -f mpegts opus.ts
