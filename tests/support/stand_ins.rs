//! Real servers standing in for AWS and ECR on loopback: moto in server mode (ECR, STS and
//! ECS APIs, with request recording) and Debian's docker-registry with htpasswd auth.
//!
//! Servers are children of one long-lived spawner thread with PR_SET_PDEATHSIG, so they die
//! with the test process even when a test panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts `cmd` as a child that is killed when this test process exits.
pub fn spawn_daemon(cmd: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                // SAFETY: prctl is async-signal-safe; the parent-death signal is tied to this
                // thread, which lives as long as the process.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .expect("spawner")
        .send((cmd, reply))
        .expect("spawner thread");
    result
        .recv()
        .expect("spawner reply")
        .expect("spawn stand-in server")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 30 s");
}

/// A moto server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    recording: PathBuf,
    _process: Server,
    _dir: tempfile::TempDir,
}

/// A server process, stopped when dropped (or when the test process dies).
pub struct Server(Child);

impl Server {
    /// Owns `child`: it is killed when this is dropped.
    pub fn new(child: Child) -> Server {
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The account moto hands out by default.
pub const ACCOUNT: &str = "123456789012";

impl Moto {
    /// Starts a moto server that records every request it receives.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let recording = dir.path().join("recording.jsonl");
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("MOTO_ENABLE_RECORDING", "true")
        .env("MOTO_RECORDER_FILEPATH", &recording)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let process = Server(spawn_daemon(cmd));
        wait_for_port(port, "moto");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            recording,
            _process: process,
            _dir: dir,
        }
    }

    /// The password moto's `GetAuthorizationToken` hands out.
    pub fn ecr_password() -> String {
        format!("{ACCOUNT}-auth-token")
    }

    /// The runner-process environment pointing the SDK at this server with host keys.
    pub fn runner_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "AKIAHOSTKEY0000000000".into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                "host-secret-key-never-logged".into(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Every request moto received, as recorded (`headers`, `method`, `url`, `body`).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.recording)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The decoded bodies of recorded requests.
    pub fn request_bodies(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                let body = r["body"].as_str().unwrap_or_default();
                if r["body_encoded"].as_bool().unwrap_or(false) {
                    String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD
                            .decode(body)
                            .unwrap_or_default(),
                    )
                    .into_owned()
                } else {
                    body.to_string()
                }
            })
            .collect()
    }

    /// Calls an AWS JSON-1.1 API on moto directly (test setup, not the code under test).
    pub fn call(&self, target: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, text) = aws_json_call(&self.endpoint, "ap-northeast-1", target, &body);
        assert!(status < 300, "{target} -> {status}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

/// Calls an AWS JSON-1.1 API at `endpoint` (moto) in `region`; returns the status and the
/// body.
pub fn aws_json_call(
    endpoint: &str,
    region: &str,
    target: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let service = if target.starts_with("AmazonEC2ContainerRegistry") {
        "ecr"
    } else if target.starts_with("Logs_") {
        "logs"
    } else {
        "ecs"
    };
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAHOSTKEY0000000000/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    http(
        endpoint,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target),
            ("Authorization", &auth),
        ],
        body.to_string().as_bytes(),
    )
}

/// A docker-registry (distribution) with htpasswd auth for user `AWS`.
pub struct Registry {
    /// `127.0.0.1:PORT`, used as `ECR_REGISTRY`.
    pub host: String,
    password: String,
    _process: Server,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry accepting `AWS` / `password`.
    pub fn start(password: &str) -> Registry {
        Self::start_with(password, false)
    }

    /// Starts one that serves what it has but takes no pushes (its maintenance mode).
    pub fn start_read_only(password: &str) -> Registry {
        Self::start_with(password, true)
    }

    fn start_with(password: &str, read_only: bool) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // The password goes on stdin: the secret scans watch every command line.
        let mut child = Command::new("htpasswd")
            .args(["-Bin", "AWS"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("htpasswd (apache2-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("password");
        let htpasswd = child.wait_with_output().expect("htpasswd");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let maintenance = if read_only {
            "  maintenance:\n    readonly:\n      enabled: true\n"
        } else {
            ""
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n{maintenance}  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test-registry\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Server(spawn_daemon(cmd));
        wait_for_port(port, "docker-registry");
        Registry {
            host: format!("127.0.0.1:{port}"),
            password: password.to_string(),
            _process: process,
            _dir: dir,
        }
    }

    /// Pushes the local `image` as `repository:tag` here (with a docker CLI configuration of
    /// its own, so no test's login reaches the runner user's); returns its name here. The
    /// engine keeps no tag of it.
    pub fn push(&self, image: &str, repository: &str, tag: &str) -> String {
        let name = format!("{}/{repository}:{tag}", self.host);
        let config = tempfile::tempdir().expect("temp dir");
        let docker = |args: &[&str], stdin: Option<&str>| {
            let mut child = Command::new("docker")
                .arg("--config")
                .arg(config.path())
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker cli");
            if let Some(text) = stdin {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(text.as_bytes())
                    .expect("stdin");
            }
            assert!(child.wait().expect("docker").success(), "docker {args:?}");
        };
        docker(
            &["login", "-u", "AWS", "--password-stdin", &self.host],
            Some(&self.password),
        );
        docker(&["tag", image, &name], None);
        docker(&["push", &name], None);
        docker(&["rmi", &name], None);
        name
    }

    /// `DOCKER_AUTH_CONFIG` a job would carry for this registry.
    pub fn auth_config(&self) -> String {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", self.password));
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            self.host
        )
    }

    fn get(&self, path: &str, accept: &str) -> (u16, String) {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", self.password));
        http(
            &format!("http://{}", self.host),
            "GET",
            path,
            &[
                ("Authorization", &format!("Basic {auth}")),
                ("Accept", accept),
            ],
            b"",
        )
    }

    /// The manifest of `repo:tag`, `None` if absent.
    pub fn manifest(&self, repo: &str, tag: &str) -> Option<serde_json::Value> {
        let (status, body) = self.get(
            &format!("/v2/{repo}/manifests/{tag}"),
            "application/vnd.docker.distribution.manifest.v2+json",
        );
        (status == 200).then(|| serde_json::from_str(&body).expect("manifest JSON"))
    }

    /// The digest the registry serves `repo:tag`'s manifest under: the SHA-256 of its bytes.
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let (status, body) = self.get(
            &format!("/v2/{repo}/manifests/{tag}"),
            "application/vnd.docker.distribution.manifest.v2+json",
        );
        if status != 200 {
            return None;
        }
        let mut sha = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        sha.stdin.take()?.write_all(body.as_bytes()).ok()?;
        let out = sha.wait_with_output().ok()?;
        let hex = String::from_utf8_lossy(&out.stdout);
        Some(format!("sha256:{}", hex.split_whitespace().next()?))
    }

    /// The image config (labels etc.) of `repo:tag`.
    pub fn image_config(&self, repo: &str, tag: &str) -> Option<serde_json::Value> {
        let manifest = self.manifest(repo, tag)?;
        let digest = manifest["config"]["digest"].as_str()?;
        let (status, body) = self.get(&format!("/v2/{repo}/blobs/{digest}"), "*/*");
        (status == 200).then(|| serde_json::from_str(&body).expect("config JSON"))
    }

    /// The tags of `repo`.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v2/{repo}/tags/list"), "application/json");
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A minimal HTTP/1.1 client for test assertions against loopback servers.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A git repository with `files`, committed on `main` and tagged with each of `tags`.
pub fn git_project(dir: &Path, files: &[(&str, &str)], tags: &[&str]) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q"]);
    commit(&repo, files, "release");
    for tag in tags {
        git(&repo, &["tag", tag]);
    }
    repo
}

/// Writes `files` into `repo` and commits them (and any other change) with `message`.
pub fn commit(repo: &Path, files: &[(&str, &str)], message: &str) {
    for (name, content) in files {
        let path = repo.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", message]);
}

/// Runs git in `repo` as a test user on `main`; fails the test if git fails.
pub fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// What git prints in `repo` for `args`, trimmed; fails the test if git fails.
pub fn git_output(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server that answers nothing and keeps everything sent to it: an attacker's endpoint, or
/// an AWS endpoint that no request may reach.
pub struct Recorder {
    /// `127.0.0.1:PORT`.
    pub address: String,
    received: std::sync::Arc<Mutex<Vec<u8>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    /// Starts one.
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let received = std::sync::Arc::new(Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (sink, count) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder {
            address,
            received,
            connections,
        }
    }

    /// As an http:// URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything it received.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap_or_else(|p| p.into_inner()))
            .into_owned()
    }
}
