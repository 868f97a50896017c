"""Runs a command and records, byte for byte, what went into its stdin and what came out of its stdout.

    python3 tee.py IN_FILE OUT_FILE -- CMD [ARGS...]

Bytes are copied as they arrive, unchanged (no decoding, no line buffering). EOF on our stdin closes
the command's stdin; EOF on its stdout closes ours. Exits with the command's status (128+N for signal N).
The MCP proxy tests put one of these on each side of `ipckit-top mcp` to prove what each side sent and
received.
"""

import os
import subprocess
import sys
import threading


def pump(src_fd, dst_fd, record):
    with open(record, "wb", buffering=0) as log:
        while True:
            try:
                chunk = os.read(src_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            log.write(chunk)
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst_fd, view):]
            except OSError:
                break
    os.close(dst_fd)


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        sys.exit("usage: tee.py IN_FILE OUT_FILE -- CMD [ARGS...]")
    in_file, out_file, command = args[0], args[1], args[3:]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    inbound = threading.Thread(
        target=pump, args=(0, os.dup(child.stdin.fileno()), in_file), daemon=True
    )
    child.stdin.close()
    inbound.start()
    outbound = threading.Thread(target=pump, args=(child.stdout.fileno(), 1, out_file))
    outbound.start()
    status = child.wait()
    outbound.join()
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
