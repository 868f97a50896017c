//! The byte relay: copies one stream to another a read at a time, showing each complete line to a
//! [`Lines`] that says whether it goes through as it is, changed, or not at all.
//!
//! Each read's lines leave with one `write`: straight from the read buffer when they all go through
//! unchanged (whatever bytes they hold: not UTF-8, `\r\n`, no JSON), else gathered with the
//! changed ones into one buffer first, so a changed line costs a copy, never extra writes (which
//! would wake the reader on the other side once per line).
//! A line longer than [`MAX_INSPECTED_LINE`] is not held back to be inspected: it is forwarded as it
//! arrives, untouched. A last line without `\n` at end of input is inspected and forwarded as it is.

use super::tracker::Action;
use std::io::{self, Read, Write};

/// Lines up to this size are held until complete and shown to [`Lines::line`]; longer ones are
/// forwarded as they arrive, uninspected.
pub const MAX_INSPECTED_LINE: usize = 16 << 20;

/// The first read buffer; it grows (doubling) while a line being held does not fit.
const INITIAL_BUFFER: usize = 64 * 1024;

/// What a relay does with lines.
pub trait Lines {
    /// Decides about one complete line (without its `\n`).
    fn line(&mut self, line: &[u8]) -> Action;
    /// Called once per read, after its lines were decided and before they are written: the place to
    /// hand on what was seen, before the other side can answer it.
    fn before_write(&mut self) {}
}

/// Why a relay stopped.
#[derive(Debug)]
pub enum End {
    /// The input reached end of file (everything read was forwarded).
    InputClosed,
    /// Reading the input failed.
    InputFailed(io::Error),
    /// Writing failed: the reader on the other side is gone.
    OutputClosed(io::Error),
}

/// Relays `input` to `output` until either ends.
pub fn relay(input: &mut impl Read, output: &mut impl Write, lines: &mut impl Lines) -> End {
    Relay {
        buf: vec![0; INITIAL_BUFFER],
        staged: Vec::new(),
        filled: 0,
        scanned: 0,
        passthrough: false,
        max_line: MAX_INSPECTED_LINE,
    }
    .run(input, output, lines)
}

struct Relay {
    /// Bytes read and not yet written are `buf[..filled]`; they start at a line start (or inside a
    /// passthrough line).
    buf: Vec<u8>,
    /// This read's output, when some line in it changed.
    staged: Vec<u8>,
    filled: usize,
    /// `buf[..scanned]` holds no `\n`.
    scanned: usize,
    /// The line being read is too long to inspect: forward it up to its end.
    passthrough: bool,
    max_line: usize,
}

impl Relay {
    fn run(
        &mut self,
        input: &mut impl Read,
        output: &mut impl Write,
        lines: &mut impl Lines,
    ) -> End {
        loop {
            if self.filled == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
            let n = match input.read(&mut self.buf[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return End::InputFailed(e),
            };
            if n == 0 {
                let result = self.finish(output, lines);
                return match result {
                    Ok(()) => End::InputClosed,
                    Err(e) => End::OutputClosed(e),
                };
            }
            self.filled += n;
            let result = self.forward(output, lines);
            if let Err(e) = result {
                return End::OutputClosed(e);
            }
        }
    }

    /// Writes every complete line read so far (as `lines` decides), and a held line that grew too
    /// long; keeps the incomplete rest.
    fn forward(&mut self, output: &mut impl Write, lines: &mut impl Lines) -> io::Result<()> {
        let mut run_start = 0;
        let mut line_start = 0;
        let mut from = self.scanned;
        self.staged.clear();
        let mut staging = false;
        while let Some(found) = memchr::memchr(b'\n', &self.buf[from..self.filled]) {
            let end = from + found;
            if std::mem::take(&mut self.passthrough) {
                // The end of a long line: it goes with the run.
            } else {
                match lines.line(&self.buf[line_start..end]) {
                    Action::Forward => {}
                    Action::Replace(new) => {
                        self.staged
                            .extend_from_slice(&self.buf[run_start..line_start]);
                        self.staged.extend_from_slice(&new);
                        self.staged.push(b'\n');
                        staging = true;
                        run_start = end + 1;
                    }
                    Action::Drop => {
                        self.staged
                            .extend_from_slice(&self.buf[run_start..line_start]);
                        staging = true;
                        run_start = end + 1;
                    }
                }
            }
            line_start = end + 1;
            from = end + 1;
        }
        let tail = self.filled - line_start;
        let cut = self.passthrough || tail > self.max_line;
        // What leaves now: the run of lines since the last change, and a line too long to hold.
        let upto = if cut { self.filled } else { line_start };
        lines.before_write();
        if staging {
            self.staged.extend_from_slice(&self.buf[run_start..upto]);
            output.write_all(&self.staged)?;
        } else {
            output.write_all(&self.buf[run_start..upto])?;
        }
        if cut {
            self.passthrough = true;
            self.filled = 0;
            self.scanned = 0;
            return Ok(());
        }
        self.buf.copy_within(line_start..self.filled, 0);
        self.filled = tail;
        self.scanned = tail;
        Ok(())
    }

    /// End of input: the last line, if it has no `\n`.
    fn finish(&mut self, output: &mut impl Write, lines: &mut impl Lines) -> io::Result<()> {
        let rest = &self.buf[..self.filled];
        if rest.is_empty() {
            return output.flush();
        }
        if self.passthrough {
            output.write_all(rest)?;
        } else {
            let action = lines.line(rest);
            lines.before_write();
            match action {
                Action::Forward => output.write_all(rest)?,
                Action::Replace(new) => output.write_all(&new)?,
                Action::Drop => {}
            }
        }
        self.filled = 0;
        output.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads in the given sizes (to cut lines anywhere).
    struct Chunked<'a> {
        data: &'a [u8],
        sizes: std::iter::Cycle<std::vec::IntoIter<usize>>,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self
                .sizes
                .next()
                .unwrap_or(1)
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Drops lines that are exactly "drop", replaces "swap" by "SWAPPED", records what it saw.
    #[derive(Default)]
    struct Rules {
        seen: Vec<Vec<u8>>,
        writes: usize,
    }

    impl Lines for Rules {
        fn line(&mut self, line: &[u8]) -> Action {
            self.seen.push(line.to_vec());
            match line {
                b"drop" => Action::Drop,
                b"swap" => Action::Replace(b"SWAPPED".to_vec()),
                _ => Action::Forward,
            }
        }
        fn before_write(&mut self) {
            self.writes += 1;
        }
    }

    fn through(data: &[u8], sizes: Vec<usize>, max_line: usize) -> (Vec<u8>, Rules) {
        let mut input = Chunked {
            data,
            sizes: sizes.into_iter().cycle(),
        };
        let mut out = Vec::new();
        let mut rules = Rules::default();
        let mut relay = Relay {
            buf: vec![0; 8],
            staged: Vec::new(),
            filled: 0,
            scanned: 0,
            passthrough: false,
            max_line,
        };
        assert!(matches!(
            relay.run(&mut input, &mut out, &mut rules),
            End::InputClosed
        ));
        (out, rules)
    }

    #[test]
    fn bytes_pass_untouched_however_they_are_cut() {
        let data = b"{\"a\":1}\r\n\xff\xfe not utf8\n\nplain text\nlast without newline";
        for sizes in [vec![1], vec![3, 7], vec![64], vec![5, 1, 2]] {
            let (out, rules) = through(data, sizes, 1 << 20);
            assert_eq!(out, data);
            assert_eq!(rules.seen.len(), 5);
            assert_eq!(rules.seen[1], b"\xff\xfe not utf8");
            assert_eq!(rules.seen[4], b"last without newline");
        }
    }

    #[test]
    fn dropped_and_replaced_lines_and_only_those_change() {
        let data = b"one\ndrop\nswap\ntwo\ndrop";
        for sizes in [vec![1], vec![4], vec![100]] {
            let (out, _) = through(data, sizes, 1 << 20);
            assert_eq!(out, b"one\nSWAPPED\ntwo\n");
        }
    }

    #[test]
    fn a_line_too_long_to_hold_passes_uninspected() {
        let long = "x".repeat(100);
        let data = format!("a\n{long}drop\nswap\n");
        let (out, rules) = through(data.as_bytes(), vec![7], 32);
        assert_eq!(out, format!("a\n{long}drop\nSWAPPED\n").as_bytes());
        assert_eq!(rules.seen, vec![b"a".to_vec(), b"swap".to_vec()]);
        // Held lines up to the limit are still inspected.
        let (out, _) = through(b"drop\n", vec![1], 4);
        assert_eq!(out, b"");
    }

    #[test]
    fn each_read_leaves_in_one_write_changed_lines_included() {
        struct Counting(usize, Vec<u8>);
        impl Write for Counting {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                self.1.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut input: &[u8] = b"a\nswap\nb\ndrop\nc\n";
        let mut out = Counting(0, Vec::new());
        relay(&mut input, &mut out, &mut Rules::default());
        assert_eq!(out.1, b"a\nSWAPPED\nb\nc\n");
        assert_eq!(out.0, 1);
    }

    #[test]
    fn a_closed_output_stops_the_relay() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut input: &[u8] = b"a\nb\n";
        let end = relay(&mut input, &mut Closed, &mut Rules::default());
        assert!(matches!(end, End::OutputClosed(_)));
    }
}
