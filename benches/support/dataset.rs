//! The realistic dataset shared by `benches/store.rs` and `benches/tui.rs`: render-farm events of
//! several kinds (progress, logs, MCP progress, transfers, task lifecycle), about 100-200 bytes of
//! JSON each, from a seeded generator so every run and every benchmark sees the same events.
//! Included with `#[path = "support/dataset.rs"] mod dataset;`.

use ipckit::Event;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const JOBS: u64 = 300;
const WORDS: &[&str] = &[
    "render", "sampling", "denoise", "texture", "cache", "miss", "loaded", "shader", "compile",
    "bvh", "build", "light", "bake", "upload", "chunk", "retry", "socket", "timeout", "disk",
    "slow", "memory", "peak", "frame", "tile", "done",
];

/// The `i`th event of the realistic dataset: id `i + 1`, a millisecond apart.
pub fn realistic(rng: &mut Rng, i: u64) -> Event {
    let job = rng.below(JOBS);
    let res = format!("job-{job:04}");
    let (event_type, resource, data): (&str, String, Value) = match rng.below(100) {
        0..=34 => {
            let total = 240 + job % 7 * 60;
            let cur = i % total;
            let data = json!({"current": cur, "total": total, "percentage": cur * 100 / total,
                "message": format!("rendering frame {cur}/{total}")});
            ("task.progress", res, data)
        }
        35..=64 => {
            let (ty, level) = match rng.below(10) {
                0..=5 => ("log.stdout", "stdout"),
                6..=7 => ("log.info", "info"),
                8 => ("log.warn", "warn"),
                _ => ("log.stderr", "stderr"),
            };
            let mut msg = format!("[{}] ", WORDS[rng.below(WORDS.len() as u64) as usize]);
            for _ in 0..3 + rng.below(6) {
                msg.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                msg.push(' ');
            }
            msg.push_str(&format!("{}.{:02}s", rng.below(20), rng.below(100)));
            (ty, res, json!({"level": level, "message": msg}))
        }
        65..=79 => {
            let token = format!("tok-{:04x}", job * 31 % 997);
            let p = (i % 100) as f64;
            let data = json!({"progressToken": token, "progress": p, "total": 100.0,
                "message": format!("indexing files {}/100", p as u64)});
            ("mcp.notifications.progress", token, data)
        }
        80..=91 => {
            let total = 1_000_000 + job * 7919 % 50_000_000;
            let ty = if rng.below(2) == 0 {
                "file.upload.progress"
            } else {
                "file.download.progress"
            };
            let data = json!({"file": format!("/farm/assets/job-{job:04}/tex_{:04}.exr", rng.below(5000)),
                "bytes": total / 100 * (i % 100), "total": total, "rate_bps": rng.below(90_000_000)});
            (ty, format!("xfer-{:03}", job % 120), data)
        }
        _ => {
            let node = format!("n-{:02}", rng.below(24));
            match rng.below(4) {
                0 => (
                    "task.created",
                    res,
                    json!({"node": node, "priority": rng.below(5), "frames": 240}),
                ),
                1 => (
                    "task.started",
                    res,
                    json!({"node": node, "attempt": 1 + rng.below(3)}),
                ),
                2 => (
                    "task.completed",
                    res,
                    json!({"result": {"frames": 240, "output": format!("/farm/out/job-{job:04}/")},
                        "elapsed_s": rng.below(4000)}),
                ),
                _ => {
                    let code = 1 + rng.below(3);
                    let data =
                        json!({"error": format!("exit code {code} on {node}"), "exit_code": code});
                    ("task.failed", res, data)
                }
            }
        }
    };
    let mut event = Event::with_resource(event_type, &resource, data);
    event.id = i + 1;
    event.timestamp =
        UNIX_EPOCH + Duration::from_micros(1_732_500_000_000_000 + i * 1_000 + rng.below(1_000));
    event
}
