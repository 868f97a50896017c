//! Recordings: reading NDJSON (plain, gzip, zstd) with bad lines skipped and counted, a data dir
//! opened read-only (also while a server holds it), and `w` writing what `--open` reads back.

mod tui_support;

use ipckit::top::{open_recording, update, Action, RecordingStatus};
use ipckit::Event;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tui_support::*;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ipckit-recording-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything a recording holds: its events and its last status.
fn read_all(path: &Path) -> (Vec<Event>, RecordingStatus) {
    let recording = open_recording(path).unwrap();
    let mut events = Vec::new();
    let status = recording.read(
        |batch| {
            events.extend(batch.iter().map(|e| (**e).clone()));
            true
        },
        |_| true,
    );
    (events, status)
}

/// `workload(n)` as NDJSON lines, as `events --format json` prints them.
fn ndjson(events: &[Arc<Event>]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(&**e).unwrap())
        .collect()
}

/// 100 events with three bad lines among them: at lines 17, 50 and 103, and blank lines (not
/// counted) at 60 and the end.
fn with_bad_lines() -> (Vec<Arc<Event>>, String) {
    let events = workload(100);
    let mut lines = ndjson(&events);
    lines.insert(16, "this is not JSON".into());
    lines.insert(49, r#"{"id": "seven", "event_type": "x"}"#.into());
    lines.insert(59, String::new());
    lines.insert(102, "[1, 2, 3]".into());
    (events, lines.join("\n") + "\r\n\n")
}

#[test]
fn a_recording_with_bad_lines_is_read_whole_and_they_are_counted_exactly() {
    let dir = TempDir::new("bad");
    let (events, text) = with_bad_lines();
    let path = dir.0.join("run.ndjson");
    std::fs::write(&path, &text).unwrap();
    let (read, status) = read_all(&path);
    assert_eq!(read.len(), 100);
    assert!(read.iter().zip(&events).all(|(a, b)| a == &**b));
    assert_eq!(status.name, "run.ndjson");
    assert_eq!(status.skipped, 3);
    assert_eq!(status.first_skipped.as_deref(), Some("line 17"));
    assert!(
        status
            .first_skip_reason
            .as_deref()
            .unwrap()
            .contains("column"),
        "{status:?}"
    );
    assert!(status.loaded && status.error.is_none());
    assert_eq!(
        status.skipped_text().as_deref(),
        Some("3 lines skipped, first at line 17")
    );
}

#[test]
fn gzip_and_zstd_recordings_are_told_by_their_bytes_not_their_name() {
    let dir = TempDir::new("compressed");
    let (events, text) = with_bad_lines();
    // gzip, in two members (as `cat a.gz b.gz` makes), named without .gz.
    let (first, second) = text.split_at(text.len() / 2);
    let mut gz = Vec::new();
    for part in [first, second] {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part.as_bytes()).unwrap();
        gz.extend(encoder.finish().unwrap());
    }
    let gz_path = dir.0.join("run.log");
    std::fs::write(&gz_path, &gz).unwrap();
    let (read, status) = read_all(&gz_path);
    assert_eq!((read.len(), status.skipped), (100, 3));
    assert!(read.iter().zip(&events).all(|(a, b)| a == &**b));

    // zstd, by the `zstd` tool when there is one (the decoder is tested on what real files hold).
    let zst_path = dir.0.join("run.zst");
    let plain = dir.0.join("plain.ndjson");
    std::fs::write(&plain, &text).unwrap();
    let made = std::process::Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst_path)
        .arg(&plain)
        .status();
    match made {
        Ok(status) if status.success() => {
            let (read, status) = read_all(&zst_path);
            assert_eq!((read.len(), status.skipped), (100, 3));
            assert!(read.iter().zip(&events).all(|(a, b)| a == &**b));
        }
        _ => eprintln!("no zstd tool here: the zstd recording was not tested"),
    }

    // A truncated gzip stream: what was read is kept, and the reading says why it stopped.
    let cut = dir.0.join("cut.gz");
    std::fs::write(&cut, &gz[..gz.len() / 3]).unwrap();
    let (read, status) = read_all(&cut);
    assert!(read.len() < 100);
    assert!(status.loaded);
    assert!(status.error.is_some(), "{status:?}");
}

#[test]
fn opening_a_missing_file_is_one_clear_error() {
    let error = open_recording(Path::new("/nonexistent/run.ndjson")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot open recording /nonexistent/run.ndjson: "),
        "{error}"
    );
}

#[test]
fn w_writes_the_matching_events_and_open_reads_them_back_to_the_same_view() {
    let dir = TempDir::new("roundtrip");
    let mut state = state_with(1000, None);
    feed(&mut state, workload(500));
    key(&mut state, KeyCode::Char('/'));
    typed(&mut state, "task.* !res:upload-*");
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.match_count(), 100);
    let expected: Vec<Arc<Event>> = {
        key(&mut state, KeyCode::Char('g'));
        let mut all = Vec::new();
        for _ in 0..200 {
            all.extend(state.selected_event());
            key(&mut state, KeyCode::Char('j'));
        }
        all.dedup_by_key(|e| e.id);
        all
    };
    assert_eq!(expected.len(), 100);

    key(&mut state, KeyCode::Char('w'));
    assert_eq!(state.focus(), ipckit::top::Focus::Prompt);
    assert!(
        state.prompt_text().unwrap().starts_with("ipckit-")
            && state.prompt_text().unwrap().ends_with(".ndjson"),
        "{:?}",
        state.prompt_text()
    );
    key_with(&mut state, KeyCode::Char('u'), KeyModifiers::CONTROL);
    let path = dir.0.join("kept.ndjson");
    typed(&mut state, path.to_str().unwrap());
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.focus(), ipckit::top::Focus::Events);
    while state.has_background_work() {
        update(&mut state, Action::Scan);
    }
    let notice = state.notice().unwrap().to_owned();
    assert_eq!(
        notice,
        format!("wrote 100 events to {}", path.display()),
        "{notice}"
    );

    // The file is what `events --format json` prints, and it opens to the same events.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, ndjson(&expected).join("\n") + "\n");
    let (read, status) = read_all(&path);
    assert_eq!(status.skipped, 0);
    assert_eq!(read.len(), 100);
    assert!(read.iter().zip(&expected).all(|(a, b)| a == &**b));

    // Shown through the monitor's ingest path, the recording is the same view.
    let opened = std::cell::RefCell::new(state_with(1000, None));
    let recording = open_recording(&path).unwrap();
    recording.read(
        |batch| {
            feed(&mut opened.borrow_mut(), batch);
            true
        },
        |status| {
            update(&mut opened.borrow_mut(), Action::Recording(status.clone()));
            true
        },
    );
    let opened = opened.into_inner();
    assert_eq!(opened.match_count(), 100);
    assert_eq!(opened.recording().unwrap().name, "kept.ndjson");
    let s = screen(&opened, 120, 30);
    assert!(
        s[0].contains("RECORDING kept.ndjson ─ 100 events"),
        "{}",
        s.join("\n")
    );

    // An existing file is never overwritten: the prompt stays open, saying so.
    key(&mut state, KeyCode::Char('w'));
    key_with(&mut state, KeyCode::Char('u'), KeyModifiers::CONTROL);
    typed(&mut state, path.to_str().unwrap());
    key(&mut state, KeyCode::Enter);
    assert_eq!(state.focus(), ipckit::top::Focus::Prompt);
    assert!(
        state.notice().unwrap().contains("exists"),
        "{:?}",
        state.notice()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.focus(), ipckit::top::Focus::Events);
}

#[cfg(unix)]
mod data_dir {
    use super::*;
    use ipckit::store::disk::{DataDir, DiskError, DiskOptions, FsyncPolicy, Record};

    fn options() -> DiskOptions {
        DiskOptions {
            segment_bytes: 64 << 10,
            fsync: FsyncPolicy::Never,
            ..DiskOptions::default()
        }
    }

    fn append(dir: &mut DataDir, events: &[Arc<Event>]) {
        for event in events {
            let mut event = (**event).clone();
            event.id = dir.next_id();
            dir.append(Record::from_event(&event).unwrap().as_ref())
                .unwrap();
        }
    }

    #[test]
    fn a_data_dir_opens_read_only_even_while_a_server_holds_it() {
        let tmp = TempDir::new("datadir");
        let path = tmp.0.join("data");
        let (mut writer, _) = DataDir::open(&path, options()).unwrap();
        let events = workload(2000);
        append(&mut writer, &events[..1500]);
        let lock_before = std::fs::read(path.join("LOCK")).unwrap();

        let (read, status) = read_all(&path);
        assert_eq!(read.len(), 1500);
        assert!(read.iter().zip(&events).all(|(a, b)| a.data == b.data));
        assert_eq!(status.name, "data/");
        let note = status.note.unwrap();
        assert!(
            note.contains(&format!("server pid {}", std::process::id())),
            "{note}"
        );

        let (mut reader, recovery) = DataDir::open_read_only(&path).unwrap();
        assert_eq!(recovery.records, 1500);
        assert_eq!(reader.holder(), Some(Some(std::process::id())));
        assert!(matches!(
            reader.append(Record::from_event(&events[0]).unwrap().as_ref()),
            Err(DiskError::ReadOnly { .. })
        ));
        // The writer goes on, closes (cutting its segment's unused end) and its lock goes: the reader
        // still reads what it had, and changed nothing on disk.
        append(&mut writer, &events[1500..]);
        writer.close().unwrap();
        assert_eq!(reader.read_from(0).count(), 1500);
        assert_eq!(
            reader
                .read_from(0)
                .filter_map(Result::ok)
                .last()
                .unwrap()
                .id,
            1500
        );
        assert_eq!(std::fs::read(path.join("LOCK")).unwrap(), lock_before);
        drop(reader);
        let (read, status) = read_all(&path);
        assert_eq!(read.len(), 2000);
        assert_eq!(status.note, None, "nobody holds it any more");
        // And a writer can take it again.
        let (writer, recovery) = DataDir::open(&path, options()).unwrap();
        assert_eq!(recovery.records, 2000);
        drop(writer);
    }

    #[test]
    fn a_directory_that_is_not_a_data_dir_is_refused_clearly() {
        let tmp = TempDir::new("notdata");
        let empty = tmp.0.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let error = open_recording(&empty).unwrap_err().to_string();
        assert!(error.contains("no ipckit data dir at"), "{error}");
        assert!(
            std::fs::read_dir(&empty).unwrap().next().is_none(),
            "nothing written into it"
        );
    }
}
