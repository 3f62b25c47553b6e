//! Addresses a job must not reach, made real on this host: an instance metadata service at
//! 169.254.169.254 in a network namespace of its own, routed through the host as EC2's is
//! (off the host, so job traffic to it is forwarded, not delivered locally), and a TCP
//! listener on every host address.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stand_ins::{spawn_daemon, Server};

/// What the fake metadata service answers.
pub const METADATA_ANSWER: &str = "ami-id-from-the-fake-metadata-service";
const NAMESPACE: &str = "gee-test-imds";
const HOST_SIDE: &str = "geetimds0";

/// An instance metadata service on 169.254.169.254:80, removed when dropped; one at a time
/// (the tests that start one wait for each other).
pub struct FakeMetadata {
    _server: Server,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    assert!(ip(args), "ip {}", args.join(" "));
}

impl FakeMetadata {
    /// Starts it (as root, with iproute2: the test machine's own network namespaces).
    pub fn start() -> FakeMetadata {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        // Leftovers of a killed run.
        ip(&["netns", "del", NAMESPACE]);
        ip(&["link", "del", HOST_SIDE]);
        must(&["netns", "add", NAMESPACE]);
        must(&[
            "link", "add", HOST_SIDE, "type", "veth", "peer", "name", "imds0", "netns", NAMESPACE,
        ]);
        must(&["addr", "add", "169.254.169.1/32", "dev", HOST_SIDE]);
        must(&["link", "set", HOST_SIDE, "up"]);
        must(&["route", "add", "169.254.169.254/32", "dev", HOST_SIDE]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", NAMESPACE, "ip"];
            all.extend_from_slice(args);
            must(&all);
        };
        inside(&["addr", "add", "169.254.169.254/32", "dev", "imds0"]);
        inside(&["link", "set", "imds0", "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "169.254.169.1/32", "dev", "imds0"]);
        inside(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.169.1",
            "dev",
            "imds0",
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        let latest = dir.path().join("latest/meta-data");
        std::fs::create_dir_all(&latest).expect("dir");
        std::fs::write(latest.join("ami-id"), METADATA_ANSWER).expect("answer");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", NAMESPACE, "python3", "-m", "http.server"])
            .args(["--bind", "169.254.169.254", "80", "--directory"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = Server::new(spawn_daemon(cmd));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ip(&[
            "netns",
            "exec",
            NAMESPACE,
            "python3",
            "-c",
            "import socket; socket.create_connection(('169.254.169.254', 80), 1)",
        ]) {
            assert!(
                Instant::now() < deadline,
                "the fake metadata service did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The directory must outlive the server; it is tiny.
        std::mem::forget(dir);
        FakeMetadata {
            _server: server,
            _one_at_a_time: guard,
        }
    }
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        ip(&["netns", "del", NAMESPACE]);
        ip(&["link", "del", HOST_SIDE]);
    }
}

/// A TCP listener on every address of this host that answers each connection with a line,
/// for as long as it lives.
pub struct HostListener {
    /// Its port.
    pub port: u16,
    _stop: std::sync::mpsc::Sender<()>,
}

impl HostListener {
    /// Starts one.
    pub fn start() -> HostListener {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || loop {
            if !matches!(
                stopped.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Empty)
            ) {
                return;
            }
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"host service answered\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        });
        HostListener { port, _stop: stop }
    }
}

/// This host's IPv4 addresses other than loopback (its interfaces and Docker's bridges).
pub fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let address = l.split_whitespace().nth(3)?.split('/').next()?.to_string();
            (!address.starts_with("127.") && !address.starts_with("169.254.")).then_some(address)
        })
        .collect()
}
