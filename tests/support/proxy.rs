//! A byte-forwarding proxy that a test can cut: in front of the Docker engine's socket it
//! looks like an engine that stopped or restarted; in front of the registry, like a registry
//! dropping connections mid-push.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

trait Conn: Read + Write + Send + 'static {
    fn split(&self) -> std::io::Result<Box<dyn Conn>>;
    fn close(&self);
    fn close_write(&self);
}

macro_rules! conn {
    ($stream:ty) => {
        impl Conn for $stream {
            fn split(&self) -> std::io::Result<Box<dyn Conn>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn close(&self) {
                let _ = self.shutdown(std::net::Shutdown::Both);
            }
            fn close_write(&self) {
                let _ = self.shutdown(std::net::Shutdown::Write);
            }
        }
    };
}
conn!(UnixStream);
conn!(TcpStream);

/// The proxy's switches.
#[derive(Default)]
struct State {
    down: AtomicBool,
    /// Upstream bytes after which every connection is cut (0: never).
    cut_after: AtomicU64,
    forwarded: AtomicU64,
    cuts: AtomicU64,
    open: Mutex<Vec<Box<dyn Conn>>>,
}

/// A running proxy.
pub struct Proxy {
    state: Arc<State>,
    /// `unix:///path` or `127.0.0.1:port`.
    pub address: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proxy {
    /// A unix-socket proxy to `upstream` (e.g. the Docker engine's socket).
    pub fn unix(upstream: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind proxy socket");
        let upstream = upstream.to_string();
        let state = serve(
            move || listener.accept().map(|(c, _)| c),
            move || UnixStream::connect(&upstream),
        );
        Proxy {
            state,
            address: format!("unix://{}", path.display()),
            _dir: Some(dir),
        }
    }

    /// A TCP proxy on loopback to `upstream` (`host:port`).
    pub fn tcp(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let address = listener.local_addr().expect("addr").to_string();
        let upstream = upstream.to_string();
        let state = serve(
            move || listener.accept().map(|(c, _)| c),
            move || TcpStream::connect(&upstream),
        );
        Proxy {
            state,
            address,
            _dir: None,
        }
    }

    /// Cuts every open connection and refuses new ones, like a stopped upstream.
    pub fn stop(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for conn in self
            .state
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            conn.close();
        }
    }

    /// Accepts connections again, like a restarted upstream.
    pub fn start(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// How many times `cut_after` fired.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Cuts all connections once `bytes` more have been forwarded upstream, once.
    pub fn cut_after(&self, bytes: u64) {
        let now = self.state.forwarded.load(Ordering::SeqCst);
        self.state.cut_after.store(now + bytes, Ordering::SeqCst);
    }
}

/// Accepts clients and pipes each to a fresh upstream connection, unless the proxy is
/// stopped.
fn serve<C: Conn, U: Conn>(
    mut accept: impl FnMut() -> std::io::Result<C> + Send + 'static,
    connect: impl Fn() -> std::io::Result<U> + Send + 'static,
) -> Arc<State> {
    let state = Arc::new(State::default());
    let shared = state.clone();
    std::thread::spawn(move || {
        while let Ok(client) = accept() {
            match connect() {
                Ok(up) if !shared.down.load(Ordering::SeqCst) => {
                    pipe(Box::new(client), Box::new(up), &shared)
                }
                _ => continue,
            }
        }
    });
    state
}

fn pipe(client: Box<dyn Conn>, up: Box<dyn Conn>, state: &Arc<State>) {
    let (Ok(client2), Ok(up2)) = (client.split(), up.split()) else {
        return;
    };
    {
        let mut open = state.open.lock().unwrap_or_else(|p| p.into_inner());
        if let (Ok(c), Ok(u)) = (client.split(), up.split()) {
            open.push(c);
            open.push(u);
        }
    }
    let upward = state.clone();
    std::thread::spawn(move || copy(client, up2, Some(&upward)));
    std::thread::spawn(move || copy(up, client2, None));
}

fn copy(mut from: Box<dyn Conn>, mut to: Box<dyn Conn>, counted: Option<&Arc<State>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(state) = counted {
            let total = state.forwarded.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let limit = state.cut_after.load(Ordering::SeqCst);
            if limit > 0 && total >= limit {
                state.cut_after.store(0, Ordering::SeqCst);
                state.cuts.fetch_add(1, Ordering::SeqCst);
                for conn in state
                    .open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                {
                    conn.close();
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Pass a half-close on (a client ending its stdin), but keep the other direction open.
    to.close_write();
}
