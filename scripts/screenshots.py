#!/usr/bin/env python3
"""Screenshots of ipckit-top: runs the real binary with --demo in a pseudo-terminal, drives it with
keys, follows its output with a small terminal emulator and writes PNG pictures into screenshots/.

    cargo build --release && scripts/screenshots.py [path/to/ipckit-top]

Needs Python 3 with Pillow and the DejaVu Sans Mono font.
"""
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw, ImageFont

COLS, ROWS = 120, 34
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "screenshots")
FONT_DIR = "/usr/share/fonts/truetype/dejavu"

# xterm's 16 colours, then the 6x6x6 cube and the grey ramp.
BASE = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188),
        (17, 168, 205), (229, 229, 229), (102, 102, 102), (241, 76, 76), (35, 209, 139),
        (245, 245, 67), (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255)]
CUBE = [0, 95, 135, 175, 215, 255]
PALETTE = BASE + [(CUBE[i // 36], CUBE[i // 6 % 6], CUBE[i % 6]) for i in range(216)] + \
    [(8 + 10 * i,) * 3 for i in range(24)]
FG, BG = (204, 204, 204), (24, 24, 28)


class Term:
    """Just enough of a VT100 for ratatui's crossterm backend, with colours."""

    def __init__(self):
        blank = (" ", None, None, False, False)
        self.blank = blank
        self.cells = [[blank] * COLS for _ in range(ROWS)]
        self.row = self.col = 0
        self.fg = self.bg = None
        self.bold = self.rev = False
        self.pending = ""

    def feed(self, data):
        text = self.pending + data.decode("utf-8", "replace")
        self.pending = ""
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\x1b":
                if i + 1 >= len(text):
                    self.pending = text[i:]
                    return
                if text[i + 1] == "[":
                    j = i + 2
                    while j < len(text) and not ("@" <= text[j] <= "~"):
                        j += 1
                    if j >= len(text):
                        self.pending = text[i:]
                        return
                    self.csi(text[i + 2:j], text[j])
                    i = j + 1
                    continue
                i += 2
                continue
            if c == "\r":
                self.col = 0
            elif c == "\n":
                self.row = min(self.row + 1, ROWS - 1)
            elif c >= " ":
                if self.row < ROWS and self.col < COLS:
                    self.cells[self.row][self.col] = (c, self.fg, self.bg, self.bold, self.rev)
                self.col += 1
            i += 1

    def csi(self, params, final):
        if final in "Hf":
            nums = [int(n or 1) for n in params.split(";")] if params else [1, 1]
            self.row, self.col = nums[0] - 1, (nums[1] if len(nums) > 1 else 1) - 1
        elif final == "J" and params == "2":
            self.cells = [[self.blank] * COLS for _ in range(ROWS)]
        elif final == "m":
            self.sgr([int(n) if n.isdigit() else 0 for n in params.split(";")] if params else [0])

    def sgr(self, nums):
        i = 0
        while i < len(nums):
            n = nums[i]
            if n == 0:
                self.fg = self.bg = None
                self.bold = self.rev = False
            elif n == 1:
                self.bold = True
            elif n == 22:
                self.bold = False
            elif n == 7:
                self.rev = True
            elif n == 27:
                self.rev = False
            elif 30 <= n <= 37:
                self.fg = PALETTE[n - 30]
            elif 90 <= n <= 97:
                self.fg = PALETTE[n - 82]
            elif 40 <= n <= 47:
                self.bg = PALETTE[n - 40]
            elif 100 <= n <= 107:
                self.bg = PALETTE[n - 92]
            elif n == 39:
                self.fg = None
            elif n == 49:
                self.bg = None
            elif n in (38, 48) and i + 2 < len(nums) and nums[i + 1] == 5:
                colour = PALETTE[nums[i + 2] % 256]
                if n == 38:
                    self.fg = colour
                else:
                    self.bg = colour
                i += 2
            elif n in (38, 48) and i + 4 < len(nums) and nums[i + 1] == 2:
                colour = tuple(nums[i + 2:i + 5])
                if n == 38:
                    self.fg = colour
                else:
                    self.bg = colour
                i += 4
            i += 1

    def png(self, path):
        font = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSansMono.ttf"), 15)
        bold = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSansMono-Bold.ttf"), 15)
        cw, ch = 9, 19
        image = Image.new("RGB", (COLS * cw + 16, ROWS * ch + 16), BG)
        draw = ImageDraw.Draw(image)
        for y, row in enumerate(self.cells):
            for x, (c, fg, bg, is_bold, rev) in enumerate(row):
                fg, bg = fg or FG, bg or BG
                if rev:
                    fg, bg = bg, fg
                px, py = 8 + x * cw, 8 + y * ch
                if bg != BG:
                    draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=bg)
                if c in "█▇▆▅▄▃▂▁":
                    level = "▁▂▃▄▅▆▇█".index(c) + 1
                    top = py + ch - ch * level // 8
                    draw.rectangle([px, top, px + cw - 1, py + ch - 1], fill=fg)
                elif c in "─│┌┐└┘├┤┬┴":
                    mx, my = px + cw // 2, py + ch // 2
                    if c in "─┌┐└┘├┤┬┴":
                        x0 = mx if c in "┌└├" else px
                        x1 = mx if c in "┐┘┤" else px + cw - 1
                        draw.line([x0, my, x1, my], fill=fg)
                    if c in "│┌┐└┘├┤┬┴":
                        y0 = my if c in "┌┐┬" else py
                        y1 = my if c in "└┘┴" else py + ch - 1
                        draw.line([mx, y0, mx, y1], fill=fg)
                elif c != " ":
                    draw.text((px, py + 1), c, fill=fg, font=bold if is_bold else font)
        image.save(path)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "ipckit-top")
    os.makedirs(OUT, exist_ok=True)
    socket = os.path.join(tempfile.mkdtemp(prefix="ipckit-shots-"), "default.sock")
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.environ.pop("IPCKIT_SOCKET", None)
        os.execv(binary, [binary, "--socket", socket, "--demo"])
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    term = Term()

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    term.feed(os.read(fd, 65536))
                except OSError:
                    return

    def keys(data, settle=0.6):
        os.write(fd, data)
        pump(settle)

    pump(6)
    term.png(os.path.join(OUT, "demo.png"))
    keys(b"/task.* !task.progress", 0.3)
    term.png(os.path.join(OUT, "filter-typing.png"))
    keys(b"\r")
    term.png(os.path.join(OUT, "filtered.png"))
    keys(b"/\x15\r")  # Ctrl-U clears the filter
    keys(b"[[[[\x1b[D\x1b[D", 0.8)
    term.png(os.path.join(OUT, "scrubbing.png"))
    keys(b"L")
    keys(b"kkk\r")
    term.png(os.path.join(OUT, "detail.png"))
    keys(b"\x1b?")
    term.png(os.path.join(OUT, "help.png"))
    keys(b"qq", 0.5)
    os.waitpid(pid, 0)
    print("wrote", ", ".join(sorted(f for f in os.listdir(OUT) if f.endswith(".png"))), "in", OUT)


if __name__ == "__main__":
    main()
