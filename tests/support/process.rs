//! Third-party servers (installed by `.ci/run`) run as child processes on a
//! free loopback port, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released),
/// for servers that cannot report the port they bound themselves.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe addr").port()
}

/// A running child server.
pub struct ChildServer {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildServer {
    /// Starts `cmd` (which must listen on `port`) and polls until it accepts
    /// connections; panics naming the install step when the program is
    /// missing, with the server's own output when it never comes up.
    pub async fn start(name: &str, mut cmd: Command, port: u16) -> ChildServer {
        let log = std::env::temp_dir().join(format!("agw-{name}-{port}.log"));
        let out = std::fs::File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {name} ({e}); `.ci/run` installs it (see .ci/install-servers.sh)"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = ChildServer { name: name.to_owned(), addr, child };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited ({status}) before listening:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} never listened on {addr}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
}

/// hypercorn serving `tests/servers/asgi_app.py` (it implements the h2c
/// upgrade, which is what makes it the upstream for these tests), from the
/// virtualenv `.ci/install-servers.sh` made (`AGW_DIFF_PREFIX`).
pub async fn hypercorn() -> ChildServer {
    let port = free_port();
    let prefix = std::env::var("AGW_DIFF_PREFIX").unwrap_or_else(|_| "/opt/agw-diff".into());
    let venv = std::path::Path::new(&prefix).join("venv/bin/hypercorn");
    let mut cmd = Command::new(if venv.exists() { venv.into_os_string() } else { "hypercorn".into() });
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/servers")).args(["asgi_app:app", "--bind", &format!("127.0.0.1:{port}")]);
    ChildServer::start("hypercorn", cmd, port).await
}

/// The real gateway binary on `config`, with its listen and admin
/// addresses read from its JSON start-up log line (`[log] format = "json"`).
pub fn spawn_gateway(config: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgear-gateway"))
        .args(["--config", &config.display().to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stderr so the process never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "gateway listening" {
                    let _ = tx.send(v);
                }
            }
        }
    });
    let Ok(v) = rx.recv_timeout(Duration::from_secs(30)) else {
        // Not left running after the test fails.
        let _ = child.kill();
        let _ = child.wait();
        panic!("the gateway never logged its address (is `[log] format = \"json\"` set?)");
    };
    let addr: SocketAddr = v["addr"].as_str().and_then(|s| s.parse().ok()).expect("addr field");
    let admin = v["admin"].as_str().and_then(|s| s.trim_start_matches("Some(").trim_end_matches(')').parse().ok()).expect("admin field");
    (child, addr, admin)
}
