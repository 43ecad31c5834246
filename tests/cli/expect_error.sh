#!/usr/bin/env bash
# Runs a command that must fail cleanly: exit status 1 (an fd::error, not a crash) and a message on
# stderr matching an extended regular expression.
# Usage: expect_error.sh REGEX COMMAND [ARGS...]
set -u
regex="$1"
shift
err="$("$@" 2>&1 >/dev/null)"
rc=$?
printf '%s\n' "${err}"
if [[ ${rc} -ne 1 ]]; then
  echo "expect_error.sh: exit status ${rc}, expected 1" >&2
  exit 1
fi
if ! grep -Eq -- "${regex}" <<<"${err}"; then
  echo "expect_error.sh: the message does not match '${regex}'" >&2
  exit 1
fi
