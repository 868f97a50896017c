#!/usr/bin/env python3
"""Render a terminal screen captured with `tmux capture-pane -e -p` (text with SGR colour codes) to PNG.

Usage: ansi_to_png.py CAPTURE.txt OUT.png [COLUMNS ROWS]

Handles the SGR codes tmux emits: reset, bold, dim, italic, underline, reverse, the 16 colours,
256-colour (38;5;N) and true colour (38;2;R;G;B), for foreground and background.
"""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu/"
SIZE = 16
FG, BG = (220, 223, 228), (24, 26, 33)
PALETTE = [
    (40, 42, 54), (231, 76, 60), (80, 200, 120), (241, 196, 15),
    (82, 139, 255), (190, 110, 230), (64, 200, 210), (200, 204, 212),
    (98, 104, 120), (255, 110, 100), (120, 230, 150), (255, 220, 90),
    (130, 170, 255), (220, 150, 255), (120, 230, 240), (255, 255, 255),
]


def xterm256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[n // 36], steps[(n // 6) % 6], steps[n % 6]
    v = 8 + (n - 232) * 10
    return v, v, v


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.reverse = False

    def copy(self):
        s = Style()
        s.__dict__.update(self.__dict__)
        return s

    def apply(self, params):
        codes = [int(p) if p else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = PALETTE[c - 30]
            elif c == 39:
                self.fg = None
            elif 40 <= c <= 47:
                self.bg = PALETTE[c - 40]
            elif c == 49:
                self.bg = None
            elif 90 <= c <= 97:
                self.fg = PALETTE[c - 90 + 8]
            elif 100 <= c <= 107:
                self.bg = PALETTE[c - 100 + 8]
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = xterm256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    colour = None
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def parse(text, columns, rows):
    screen = []
    for line in text.split("\n")[:rows]:
        style = Style() if not screen else screen[-1][1]
        cells = []
        pos = 0
        style = Style()
        for m in SGR.finditer(line):
            for ch in line[pos:m.start()]:
                cells.append((ch, style.copy()))
            style.apply(m.group(1))
            pos = m.end()
        for ch in line[pos:]:
            cells.append((ch, style.copy()))
        screen.append((cells[:columns], style))
    return [cells for cells, _ in screen]


def render(screen, columns, rows, out):
    regular = ImageFont.truetype(FONT_DIR + "DejaVuSansMono.ttf", SIZE)
    bold = ImageFont.truetype(FONT_DIR + "DejaVuSansMono-Bold.ttf", SIZE)
    left, top, right, bottom = regular.getbbox("M")
    cw = round(regular.getlength("M"))
    ch = round(SIZE * 1.25)
    pad = 12
    img = Image.new("RGB", (columns * cw + 2 * pad, rows * ch + 2 * pad), BG)
    draw = ImageDraw.Draw(img)
    for y, cells in enumerate(screen):
        for x, (char, st) in enumerate(cells):
            fg = st.fg or FG
            bg = st.bg
            if st.reverse:
                fg, bg = (bg or BG), fg
            if st.dim:
                fg = tuple(int(v * 0.6 + BG[i] * 0.4) for i, v in enumerate(fg))
            px, py = pad + x * cw, pad + y * ch
            if bg is not None:
                draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=bg)
            if char.strip():
                # Block and box-drawing characters fill the cell; draw the full blocks as rectangles so
                # gauges and sparklines have no seams.
                if char == "█":
                    draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=fg)
                elif 0x2800 <= ord(char) <= 0x28FF:
                    # Braille (spinners): draw the dots, which the monospace font lacks.
                    bits = ord(char) - 0x2800
                    dots = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 3), (1, 3)]
                    r = max(1, cw // 8)
                    for bit, (dx, dy) in enumerate(dots):
                        if bits & (1 << bit):
                            cx = px + cw * (1 + 2 * dx) // 4
                            cy = py + ch * (1 + 2 * dy) // 8
                            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
                elif char in "▁▂▃▄▅▆▇":
                    level = "▁▂▃▄▅▆▇".index(char) + 1
                    h = ch * level // 8
                    draw.rectangle([px, py + ch - h, px + cw - 1, py + ch - 1], fill=fg)
                else:
                    draw.text((px, py + (ch - SIZE) // 2 - 1), char, font=bold if st.bold else regular, fill=fg)
            if st.underline:
                draw.line([px, py + ch - 2, px + cw - 1, py + ch - 2], fill=fg)
    img.save(out)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read().rstrip("\n")
    columns = int(sys.argv[3]) if len(sys.argv) > 3 else 120
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 36
    render(parse(text, columns, rows), columns, rows, sys.argv[2])


if __name__ == "__main__":
    main()
