#!/usr/bin/env bash
# Each bad input must make `fasterdiffusion unet` exit non-zero with an fd error id and the offending
# file/tensor named on stderr, never crash. Usage: cli_errors.sh CLI MAKE_BAD_INPUTS FIXTURES_DIR WORK_DIR
set -u
cli=$1 make_bad=$2 fixtures=$3 work=$4
model="${fixtures}/unet_tiny_sd"
rm -rf "${work}" && mkdir -p "${work}"
"${make_bad}" "${model}/unet_tiny_sd_io.safetensors" "${work}" || exit 1
failures=0
expect() {  # name expected-id expected-substring
  local name=$1 id=$2 needle=$3
  "${cli}" unet --model "${model}" --inputs "${work}/${name}.safetensors" --output "${work}/out.safetensors" \
    > "${work}/${name}.out" 2> "${work}/${name}.err"
  local rc=$?
  if [ "${rc}" -ne 1 ] || ! grep -q -- "\[${id}\]" "${work}/${name}.err" || ! grep -q -- "${needle}" "${work}/${name}.err"; then
    echo "FAIL ${name}: exit ${rc}, stderr: $(cat "${work}/${name}.err")"
    failures=$((failures + 1))
  else
    echo "ok   ${name}: $(cat "${work}/${name}.err")"
  fi
}
expect nan_sample fd.non_finite "sample"
expect missing_context fd.missing_tensor "encoder_hidden_states"
expect wrong_shape fd.shape_mismatch "sample must be"
expect extra_tensor fd.unexpected_tensor "mystery"
expect truncated fd.format "truncated.safetensors"
expect header_past_end fd.format "header_past_end.safetensors"
# A model folder without weights.
mkdir -p "${work}/empty_model" && cp "${model}/config.json" "${work}/empty_model/"
"${cli}" unet --model "${work}/empty_model" --inputs "${work}/good.safetensors" --output "${work}/o.safetensors" \
  2> "${work}/empty.err"
if [ $? -ne 1 ] || ! grep -q "fd.io" "${work}/empty.err"; then echo "FAIL empty_model: $(cat "${work}/empty.err")"; failures=$((failures + 1)); else echo "ok   empty_model: $(cat "${work}/empty.err")"; fi
# The good file works.
"${cli}" unet --model "${model}" --inputs "${work}/good.safetensors" --output "${work}/good_out.safetensors" || failures=$((failures + 1))
echo "${failures} failures"
exit $((failures > 0))
