//! No one else's socket: the socket directory is ours or refused, clients check the socket's and the
//! directory's owner before connecting and the serving process's user after, and the server closes a
//! peer of another user before it gets data.
//!
//! The cases that need a second user run only as root (they hand files and processes to uid 65534);
//! the rest run as anyone.

mod common;

use common::{TempDir, BIN};
use ipckit::transport::{Client, ClientError, ServeError, Server, ServerConfig};
use ipckit::EventBus;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const OTHER: u32 = 65534;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn bind_error(socket: &Path) -> ServeError {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    Server::bind(EventBus::default(), ServerConfig::new(socket)).expect_err("bind must refuse")
}

fn connect(socket: &Path) -> Result<Client, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), Client::connect(socket))
            .await
            .expect("connect timed out")
    })
}

/// The child's output once it exits; a child still running after `limit` is killed and the test fails
/// (a server that started where it should have refused would otherwise serve forever).
fn exit_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: it did not refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_directory_of_ours_that_others_can_write_in_is_refused() {
    let dir = TempDir::new();
    let run = dir.0.join("run");
    std::fs::create_dir(&run).unwrap();
    mode(&run, 0o777);
    let error = bind_error(&run.join("bus.sock"));
    assert!(
        error.to_string().contains("writable by other users"),
        "{error}"
    );
    assert!(!run.join("bus.sock").exists());
    // The client refuses to trust a socket there too, even one this user made.
    let socket = run.join("planted.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let error = connect(&socket).expect_err("connect must refuse");
    assert!(matches!(error, ClientError::Unsafe(_)), "{error}");
    assert!(
        error.to_string().contains("writable by other users"),
        "{error}"
    );
}

/// The issue's case: no `XDG_RUNTIME_DIR`, and another user planted `/tmp/ipckit-UID` as a link to a
/// directory of theirs. `serve` must not follow it.
#[test]
fn serve_refuses_a_default_directory_planted_as_a_link_by_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to plant files as another user");
        return;
    }
    if Path::new("/run/user/0").exists() {
        eprintln!("skipped: /run/user/0 exists, so the default socket is not under the temp dir");
        return;
    }
    let tmp = TempDir::new();
    let theirs = tmp.0.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    mode(&theirs, 0o777);
    chown(&theirs, OTHER);
    let planted = tmp.0.join("ipckit-0");
    std::os::unix::fs::symlink(&theirs, &planted).unwrap();
    chown(&planted, OTHER);
    let child = Command::new(BIN)
        .arg("serve")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("IPCKIT_SOCKET")
        .env("TMPDIR", &tmp.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = exit_within(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains("ipckit-0"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        0,
        "nothing was created in the other user's directory"
    );
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to hand a directory to another user");
        return;
    }
    let tmp = TempDir::new();
    let theirs = tmp.0.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    mode(&theirs, 0o755);
    chown(&theirs, OTHER);
    let error = bind_error(&theirs.join("bus.sock"));
    assert!(
        error
            .to_string()
            .contains("owned by another user (uid 65534)"),
        "{error}"
    );
    // A link to it that this user made is followed, and the directory it leads to still judged.
    let link = tmp.0.join("mine");
    std::os::unix::fs::symlink(&theirs, &link).unwrap();
    let error = bind_error(&link.join("bus.sock"));
    assert!(
        error.to_string().contains("owned by another user"),
        "{error}"
    );
}

#[test]
fn a_client_refuses_a_socket_another_user_owns_and_sends_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root to hand a socket to another user");
        return;
    }
    let dir = TempDir::new();
    let listener = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
    listener.set_nonblocking(true).unwrap();
    chown(&dir.socket(), OTHER);
    let error = connect(&dir.socket()).expect_err("connect must refuse");
    assert!(matches!(error, ClientError::Unsafe(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("owned by another user (uid 65534)"),
        "{error}"
    );
    assert!(
        listener.accept().is_err(),
        "the client connected to the other user's socket"
    );
    // The command line says it in one line and fails.
    let out = common::run(
        &["--socket", dir.socket().to_str().unwrap(), "publish", "x"],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refusing to connect"), "{stderr}");
    assert!(listener.accept().is_err());
}

/// A Python program of another user that serves a socket, which root then hands to itself: the file
/// looks like ours, but the process behind it is not; the client must see that through the peer's
/// credentials and send nothing. The program prints how many bytes it received.
#[test]
fn a_client_refuses_a_socket_served_by_another_users_process() {
    if !is_root() {
        eprintln!("skipped: needs root to run a process as another user");
        return;
    }
    let dir = TempDir::new();
    mode(&dir.0, 0o777);
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
got = b""
try:
    c.sendall(b'{"type":"hello","protocol":"ipckit","version":1,"server":"evil","instance":"x","last_id":0,"max_frame":1048576}\n')
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
print(len(got), flush=True)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, dir.socket().to_str().unwrap()])
        .uid(OTHER)
        .gid(OTHER)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    mode(&dir.0, 0o755);
    chown(&dir.socket(), 0);
    assert_eq!(std::fs::metadata(dir.socket()).unwrap().uid(), 0);
    let error = connect(&dir.socket()).expect_err("connect must refuse");
    assert!(
        error
            .to_string()
            .contains("served by a process of another user (uid 65534)"),
        "{error}"
    );
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        "0",
        "the client sent the other user's process data"
    );
    child.wait().unwrap();
}

/// The server's own check: another user's raw connection (the socket opened to everyone, so only
/// the peer check stands in the way) is closed before it gets any data, and our own client is refused
/// before it connects.
#[test]
fn the_server_closes_a_peer_of_another_user_before_it_gets_data() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let dir = TempDir::new();
    mode(&dir.0, 0o755);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bus = EventBus::default();
    let server = {
        let _guard = runtime.enter();
        Server::bind(bus.clone(), ServerConfig::new(dir.socket())).unwrap()
    };
    let counters = server.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    mode(&dir.socket(), 0o666);
    let script = r#"
import socket, sys
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1])
got = b""
try:
    c.sendall(b'{"type":"publish","id":1,"event":{"event_type":"intruder","data":{}}}\n')
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
print(len(got), flush=True)
"#;
    let out = Command::new("python3")
        .args(["-c", script, dir.socket().to_str().unwrap()])
        .uid(OTHER)
        .gid(OTHER)
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert_eq!(bus.last_id(), 0, "nothing was published");
    assert_eq!(counters.refused_peers(), 1);

    // Our own binary, run as the other user, refuses the socket before connecting.
    let bin = dir.0.join("ipckit-top");
    std::fs::copy(BIN, &bin).unwrap();
    mode(&bin, 0o755);
    let out = Command::new(&bin)
        .args([
            "--socket",
            dir.socket().to_str().unwrap(),
            "publish",
            "intruder",
        ])
        .uid(OTHER)
        .gid(OTHER)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refusing to connect"), "{stderr}");
    assert_eq!(counters.refused_peers(), 1, "it did not even connect");
    assert_eq!(bus.last_id(), 0);

    // The owner is still served.
    runtime.block_on(async {
        let client = Client::connect(dir.socket()).await.unwrap();
        client.ping().await.unwrap();
    });
    stop.send(()).unwrap();
    runtime.block_on(task).unwrap().unwrap();
}
