#!/usr/bin/env bash
# Times `fasterdiffusion vae-decode` at Stable Diffusion 1.5 size with random weights:
# SD 1.5 VAE (AutoencoderKL) and TAESD, 1x4x64x64 latents -> 512x512, untiled and tiled.
# usage: tests/bench/vae_bench.sh path/to/fasterdiffusion [repeat=3] [threads=0]
set -euo pipefail
exe=${1:?path to fasterdiffusion}
repeat=${2:-3}
threads=${3:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sd15_vae" "$work/taesd"
cat > "$work/sd15_vae/config.json" <<'JSON'
{"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
 "block_out_channels": [128, 256, 512, 512],
 "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
 "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
 "sample_size": 512,
 "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
JSON
cat > "$work/taesd/config.json" <<'JSON'
{"_class_name": "AutoencoderTiny", "act_fn": "relu", "decoder_block_out_channels": [64, 64, 64, 64],
 "encoder_block_out_channels": [64, 64, 64, 64], "force_upcast": false, "in_channels": 3, "latent_channels": 4,
 "latent_magnitude": 3, "latent_shift": 0.5, "num_decoder_blocks": [3, 3, 3, 1],
 "num_encoder_blocks": [1, 3, 3, 3], "out_channels": 3, "scaling_factor": 1.0, "upsampling_scaling_factor": 2}
JSON
# latents [1,4,64,64] ~ N(0,1) * 0.9 (what a sampler hands the decoder), as a safetensors file.
python3 - "$work/latents.safetensors" <<'PY'
import json, random, struct, sys
random.seed(0)
n = 4 * 64 * 64
data = struct.pack("<%df" % n, *(0.9 * random.gauss(0, 1) for _ in range(n)))
hdr = json.dumps({"latents": {"dtype": "F32", "shape": [1, 4, 64, 64], "data_offsets": [0, len(data)]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + data)
PY
for model in sd15_vae taesd; do
  echo "== $model untiled"
  "$exe" vae-decode --model "$work/$model" --random-weights --inputs "$work/latents.safetensors" \
    --output "$work/out.safetensors" --repeat "$repeat" --threads "$threads"
  echo "== $model tiled (tile 32, overlap 8: 3x3 tiles of 27)"
  "$exe" vae-decode --model "$work/$model" --random-weights --inputs "$work/latents.safetensors" \
    --output "$work/out.safetensors" --repeat "$repeat" --threads "$threads" --tiled --tile 32 --overlap 8
done
