#!/usr/bin/env bash
# Makes the README's pictures from the real binary: runs `ipckit-top --demo` in tmux on a private socket,
# drives it with keys as a person would, captures the screen with its colours (`capture-pane -e`) and
# renders each capture to PNG with scripts/ansi_to_png.py. Writes screenshots/{demo,filtered,scrubbing,detail,focus}.png,
# and screenshots/mcp.png: the monitor beside a real MCP server (the reference server from npm, in
# tests/mcp) behind `ipckit-top mcp`, driven by the official Python SDK's client, mid-way through a
# long tool call whose client asked for no progress.
#
# Needs tmux, python3 with Pillow (installed with pip if missing), the DejaVu fonts (fonts-dejavu-core),
# and for mcp.png node and npm (the server and the SDK are installed as .ci/run installs them).
# `scripts/screenshots.sh mcp` makes only mcp.png.
set -euo pipefail
cd "$(dirname "$0")/.."
cols=${COLS:-140}
rows=${ROWS:-40}
session=ipckit-shots-$$
only=${1:-all}

command -v tmux >/dev/null || { echo "screenshots: tmux is needed (apt-get install tmux)" >&2; exit 1; }
python3 -c 'import PIL' 2>/dev/null || python3 -m pip install --quiet pillow
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || { echo "screenshots: needs fonts-dejavu-core" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/ipckit-top
tmp=$(mktemp -d)
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$tmp"' EXIT
mkdir -p screenshots

keys() { tmux send-keys -t "$session" "$@"; }
shot() {
  sleep "$2"
  tmux capture-pane -t "$session" -e -p > "$tmp/$1.txt"
  python3 scripts/ansi_to_png.py "$tmp/$1.txt" "screenshots/$1.png" "$cols" "$rows"
  echo "screenshots/$1.png"
}

if [ "$only" != mcp ]; then
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "env IPCKIT_SOCKET=$tmp/bus.sock TERM=xterm-256color $bin --demo --history 100000"

# The demo warms up: jobs start, gauges move, logs scroll.
shot demo 8

# Filter as you type: only task lifecycle and stderr, progress excluded.
keys /
keys -l 'task.* log.stderr !task.progress'
shot filtered-typing 1
keys Enter
shot filtered 2

# Clear the filter, then scrub back through history: the panes show the bus as it was.
keys /
for _ in $(seq 40); do keys BSpace; done
keys Enter
sleep 1
for _ in 1 2 3 4 5 6; do keys '['; done
keys Left Left Left
shot scrubbing 1

# Back to live, select an event and open its detail view.
keys L
sleep 1
keys k k k
keys Enter
shot detail 1

# Tab to the progress pane and select the stalled job (just above the finished ones, the last of
# which is the job that failed early); the events stay paused from above, so the header counts
# what arrives (PAUSED +N). By now one job's progress went backwards and one's total changed.
keys Escape
keys Tab G k
shot focus 6

keys q
sleep 1
rm -f screenshots/filtered-typing.png
fi

# An MCP server's long call, watched: the monitor (hosting a bus) in tmux, and the client -> proxy ->
# server chain beside it. The call without a token goes first: its progress exists only because the
# proxy asked for it.
[ -d tests/mcp/node_modules ] || (cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error)
[ -x target/mcp-venv/bin/python ] || python3 -m venv target/mcp-venv
target/mcp-venv/bin/python -c 'import mcp' 2>/dev/null || target/mcp-venv/bin/pip install --quiet -r tests/mcp/requirements.txt
tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "env TERM=xterm-256color $bin --socket $tmp/mcp.sock"
sleep 2
target/mcp-venv/bin/python tests/mcp/client.py --duration 20 --steps 20 --without-first -- \
  "$bin" --socket "$tmp/mcp.sock" mcp --name everything -- \
  node tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio \
  > "$tmp/client.json" 2> "$tmp/client.err" &
client=$!
shot mcp 13
keys q
kill "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
