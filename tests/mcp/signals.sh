#!/bin/sh
# A fake MCP server for the signal tests. `trap`: on SIGTERM it says so on stderr and exits 7.
# `plain`: it keeps the default dispositions, so a signal kills it.
case "$1" in
  trap)
    trap 'echo "signals.sh: got TERM" >&2; exit 7' TERM
    echo "signals.sh: ready" >&2
    while :; do sleep 0.1; done
    ;;
  *)
    echo "signals.sh: ready" >&2
    exec sleep 1000
    ;;
esac
