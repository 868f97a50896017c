//! A built-in workload for `--demo`: render jobs reporting MCP progress and log lines, task lifecycle
//! events, an upload of unknown size, and an occasional failure, so a new user sees a live screen.
//!
//! Each rendered frame is also a `render.frame` event with data worth filtering on (`frame`, `node`,
//! `ms`): `frame>89 node=n-1` are the late frames rendered on node n-1. Some jobs show what the
//! monitor flags on a gauge: one fails early, one stalls (and on every other run fails at the end of
//! the stall instead of resuming), one's progress goes backwards once (frames re-rendered), one's
//! total changes (frames added to the shot).
//!
//! The scenario (job names, frame counts and durations, nodes, log lines, those events) is
//! `assets/demo.json`, compiled in.
//!
//! ```
//! let bus = ipckit::EventBus::default();
//! let demo = ipckit::demo::spawn(bus.publisher());
//! std::thread::sleep(std::time::Duration::from_millis(300));
//! drop(demo); // stops the workload
//! assert!(bus.last_id() > 0);
//! ```

use crate::event_stream::{event_types, Event, EventPublisher};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SCENARIO: &str = include_str!("../assets/demo.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    tick_ms: u64,
    nodes: Vec<String>,
    render_jobs: Vec<RenderJob>,
    uploads: Vec<Upload>,
    stdout_lines: Vec<String>,
    stderr_lines: Vec<String>,
    failure_message: String,
    restart_after_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderJob {
    name: String,
    frames: u64,
    frame_ms: u64,
    /// Fails after this frame, on every other run.
    fail_at: Option<u64>,
    /// Starts again this long after it ended, instead of the scenario's `restart_after_ms`.
    #[serde(default)]
    restart_after_ms: Option<u64>,
    /// Goes silent after a frame for a while.
    #[serde(default)]
    stall: Option<Stall>,
    /// Reports an earlier frame once, after reaching a frame.
    #[serde(default)]
    backwards: Option<Backwards>,
    /// Changes its total once, at a frame.
    #[serde(default)]
    retotal: Option<Retotal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stall {
    /// After this frame.
    after: u64,
    /// Silent this long.
    ms: u64,
    /// Said when it goes on.
    resume_line: String,
    /// On every other run, it fails with this instead of going on.
    fail_message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backwards {
    /// After reporting this frame...
    after: u64,
    /// ...it reports this one, and renders on from there.
    to: u64,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retotal {
    /// At this frame...
    at: u64,
    /// ...the shot has this many frames.
    frames: u64,
    line: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    name: String,
    chunk_ms: u64,
    chunks: u64,
}

/// The running demo workload; dropping it stops the workload (and waits for its thread).
#[derive(Debug)]
pub struct DemoHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DemoHandle {
    /// Stops the workload and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts the demo workload on a thread of its own, publishing through `publisher`.
pub fn spawn(publisher: EventPublisher) -> DemoHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("ipckit-demo".into())
        .spawn(move || run(&publisher, &flag))
        .ok();
    DemoHandle { stop, thread }
}

enum Phase {
    Waiting { until: Instant },
    Running { done: u64, next: Instant },
}

struct Job {
    phase: Phase,
    run: u64,
    /// Frames in this run (changes with a retotal).
    frames: u64,
    /// In a stall, until `next`.
    stalling: bool,
    /// The backwards report was made in this run.
    went_back: bool,
}

impl Job {
    fn waiting(until: Instant) -> Self {
        Job {
            phase: Phase::Waiting { until },
            run: 0,
            frames: 0,
            stalling: false,
            went_back: false,
        }
    }
}

fn fill(template: &str, job: &str, frame: u64) -> String {
    template
        .replace("{job}", job)
        .replace("{frame}", &frame.to_string())
}

/// The node a job's frame renders on.
fn node(nodes: &[String], job: usize, frame: u64) -> &str {
    match nodes.len() {
        0 => "n-1",
        n => &nodes[(job + frame as usize) % n],
    }
}

fn run(publisher: &EventPublisher, stop: &AtomicBool) {
    let scenario: Scenario = match serde_json::from_str(SCENARIO) {
        Ok(scenario) => scenario,
        Err(e) => {
            publisher.publish(Event::new(
                event_types::SYSTEM_ERROR,
                serde_json::json!({ "error": format!("demo scenario unreadable: {e}") }),
            ));
            return;
        }
    };
    let start = Instant::now();
    let stagger = |i: usize| start + Duration::from_millis(150 + 700 * i as u64);
    let mut renders: Vec<Job> = (0..scenario.render_jobs.len())
        .map(|i| Job::waiting(stagger(i)))
        .collect();
    let mut uploads: Vec<Job> = (0..scenario.uploads.len())
        .map(|i| Job::waiting(stagger(i + scenario.render_jobs.len())))
        .collect();
    let tick = Duration::from_millis(scenario.tick_ms.max(10));
    let restart = Duration::from_millis(scenario.restart_after_ms);
    let mut line = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (index, (spec, job)) in scenario
            .render_jobs
            .iter()
            .zip(renders.iter_mut())
            .enumerate()
        {
            let name = spec.name.as_str();
            match job.phase {
                Phase::Waiting { until } if now >= until => {
                    job.run += 1;
                    job.frames = spec.frames;
                    job.stalling = false;
                    job.went_back = false;
                    publisher.publish(Event::with_resource(
                        event_types::TASK_CREATED,
                        name,
                        serde_json::json!({ "kind": "render", "frames": spec.frames, "run": job.run }),
                    ));
                    publisher.task_started(name, serde_json::json!({ "frames": spec.frames }));
                    publisher.stdout(name, &fill(&scenario.stdout_lines[0], name, 0));
                    job.phase = Phase::Running {
                        done: 0,
                        next: now + Duration::from_millis(spec.frame_ms),
                    };
                }
                Phase::Running { done, next } if now >= next => {
                    let restart = spec.restart_after_ms.map_or(restart, Duration::from_millis);
                    let wait = |job: &mut Job| {
                        job.phase = Phase::Waiting {
                            until: now + restart,
                        }
                    };
                    if std::mem::take(&mut job.stalling) {
                        if let Some(stall) = &spec.stall {
                            // The end of a stall: every other run fails there instead of going on.
                            if job.run % 2 == 0 {
                                let message = fill(&stall.fail_message, name, done);
                                publisher.log(name, "error", &message);
                                publisher.task_failed(name, &message);
                                wait(job);
                                continue;
                            }
                            publisher.stdout(name, &fill(&stall.resume_line, name, done));
                        }
                    }
                    let back = spec
                        .backwards
                        .as_ref()
                        .filter(|b| b.after == done && !job.went_back);
                    if let Some(back) = back {
                        // Progress goes backwards once: frames re-rendered.
                        job.went_back = true;
                        publisher.mcp_progress(
                            name,
                            back.to as f64,
                            Some(job.frames as f64),
                            Some(&fill(&back.message, name, back.to)),
                        );
                        job.phase = Phase::Running {
                            done: back.to,
                            next: next + Duration::from_millis(spec.frame_ms),
                        };
                        continue;
                    }
                    let frame = done + 1;
                    if let Some(retotal) = spec.retotal.as_ref().filter(|r| r.at == frame) {
                        job.frames = retotal.frames;
                        publisher.stdout(name, &fill(&retotal.line, name, retotal.frames));
                    }
                    let frames = job.frames;
                    publisher.publish(Event::with_resource(
                        "render.frame",
                        name,
                        serde_json::json!({
                            "frame": frame,
                            "node": node(&scenario.nodes, index, frame),
                            "ms": spec.frame_ms * 3 + (frame * 37) % 300,
                        }),
                    ));
                    publisher.mcp_progress(
                        name,
                        frame as f64,
                        Some(frames as f64),
                        Some(&format!("Rendering frame {frame}/{frames}")),
                    );
                    if !scenario.stdout_lines.is_empty() {
                        line = line.wrapping_add(1);
                        let template = &scenario.stdout_lines[line % scenario.stdout_lines.len()];
                        publisher.stdout(name, &fill(template, name, frame));
                    }
                    if frame % 9 == 0 && !scenario.stderr_lines.is_empty() {
                        let template = &scenario.stderr_lines
                            [(frame as usize / 9) % scenario.stderr_lines.len()];
                        publisher.stderr(name, &fill(template, name, frame));
                    }
                    // Jobs with a failure point fail on every other run, so failures stay occasional.
                    if spec.fail_at == Some(frame) && job.run % 2 == 1 {
                        let message = fill(&scenario.failure_message, name, frame);
                        publisher.log(name, "error", &message);
                        publisher.task_failed(name, &message);
                        wait(job);
                    } else if frame >= frames {
                        publisher.task_completed(name, serde_json::json!({ "frames": frames }));
                        wait(job);
                    } else {
                        let stall = spec.stall.as_ref().filter(|s| s.after == frame);
                        job.stalling = stall.is_some();
                        let pause = stall.map_or(spec.frame_ms, |s| s.ms);
                        job.phase = Phase::Running {
                            done: frame,
                            next: next + Duration::from_millis(pause),
                        };
                    }
                }
                _ => {}
            }
        }
        for (spec, job) in scenario.uploads.iter().zip(uploads.iter_mut()) {
            let name = spec.name.as_str();
            match job.phase {
                Phase::Waiting { until } if now >= until => {
                    job.run += 1;
                    publisher.publish(Event::with_resource(
                        event_types::TASK_CREATED,
                        name,
                        serde_json::json!({ "kind": "upload", "run": job.run }),
                    ));
                    publisher.task_started(name, serde_json::json!({}));
                    job.phase = Phase::Running {
                        done: 0,
                        next: now + Duration::from_millis(spec.chunk_ms),
                    };
                }
                Phase::Running { done, next } if now >= next => {
                    let chunk = done + 1;
                    let megabytes = chunk * 4;
                    // Unknown total: MCP progress without a total.
                    publisher.mcp_progress(
                        name,
                        megabytes as f64,
                        None,
                        Some(&format!("uploaded {megabytes} MB")),
                    );
                    if chunk >= spec.chunks {
                        publisher
                            .task_completed(name, serde_json::json!({ "megabytes": megabytes }));
                        job.phase = Phase::Waiting {
                            until: now + restart,
                        };
                    } else {
                        job.phase = Phase::Running {
                            done: chunk,
                            next: next + Duration::from_millis(spec.chunk_ms),
                        };
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBus, EventFilter};

    #[test]
    fn scenario_parses() {
        let scenario: Scenario = serde_json::from_str(SCENARIO).unwrap();
        assert!(scenario.render_jobs.len() >= 3);
        assert!(scenario.render_jobs.iter().any(|j| j.fail_at.is_some()));
        assert!(scenario.render_jobs.iter().any(|j| j.stall.is_some()));
        assert!(scenario.render_jobs.iter().any(|j| j.backwards.is_some()));
        assert!(scenario.render_jobs.iter().any(|j| j.retotal.is_some()));
        assert!(!scenario.nodes.is_empty());
        assert!(!scenario.uploads.is_empty());
    }

    #[test]
    fn demo_publishes_lifecycle_progress_and_logs_and_stops_on_drop() {
        let bus = EventBus::default();
        let demo = spawn(bus.publisher());
        std::thread::sleep(Duration::from_millis(1500));
        drop(demo);
        let last = bus.last_id();
        let history = bus.history(&EventFilter::new());
        let has = |t: &str| history.iter().any(|e| e.event_type == t);
        assert!(has(event_types::TASK_CREATED));
        assert!(has(event_types::TASK_STARTED));
        assert!(has(event_types::MCP_PROGRESS));
        assert!(has(event_types::LOG_STDOUT));
        // Frames carry data worth filtering on.
        let frames = bus.history(&EventFilter::parse("render.frame").unwrap());
        assert!(!frames.is_empty());
        let on_nodes = EventFilter::parse("frame>0 node=n-?").unwrap();
        assert!(frames.iter().all(|e| on_nodes.matches(e)), "{frames:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            bus.last_id(),
            last,
            "the demo kept publishing after its handle dropped"
        );
    }
}
