#!/bin/sh
# A fake MCP server that dies in the middle of a tool call: it reads one request, reports progress
# once for the token the request carries (if any), says so on stderr, then exits with status $1, or
# kills itself with signal N when $1 is kill-N.
IFS= read -r request
token=$(printf '%s\n' "$request" | sed -n 's/.*"progressToken":"\([^"]*\)".*/\1/p')
if [ -n "$token" ]; then
  printf '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"%s","progress":1,"total":3}}\n' "$token"
fi
echo "crash.sh: giving up mid-call" >&2
case "$1" in
  kill-*) kill -"${1#kill-}" $$ ;;
  *) exit "$1" ;;
esac
