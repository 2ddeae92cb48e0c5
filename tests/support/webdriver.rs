//! A real browser for the login tests: Debian's headless Chromium driven
//! by its chromedriver over the W3C WebDriver protocol (JSON over HTTP,
//! spoken with the tests' own HTTP client: no WebDriver crate, so no second
//! TLS stack or crypto provider in the test build). One chromedriver per
//! test binary; one browser (session) per test, deleted when dropped.
//!
//! The browser reaches `https://<name>` origins through a small CONNECT
//! proxy of ours that maps each name to a local TLS listener, so the
//! origin is a real https one (`Secure`, `__Host-` as browsers enforce
//! them) while every port is still OS-assigned.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::send;

/// Debian's `chromium` and `chromium-driver` (`.ci/install-servers.sh`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The binary's chromedriver: `http://127.0.0.1:PORT`, started on first use.
pub fn driver() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(std::path::Path::new(p).exists(), "{p} is missing; `.ci/install-servers.sh` installs Debian's chromium and chromium-driver");
        }
        // PR_SET_PDEATHSIG fires when the spawning *thread* ends, so a
        // thread that lives as long as the test binary spawns it.
        let (tx, rx) = std::sync::mpsc::channel::<Result<u16, String>>();
        std::thread::spawn(move || {
            let mut cmd = Command::new(CHROMEDRIVER);
            cmd.arg("--port=0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
            // SAFETY: prctl only touches the new process; if the test
            // binary is killed, chromedriver dies with it.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot start {CHROMEDRIVER}: {e}")));
                    return;
                }
            };
            let Some(out) = child.stdout.take() else { return };
            let mut lines = BufReader::new(out).lines();
            let mut said = String::new();
            for line in lines.by_ref().map_while(Result::ok) {
                said.push_str(&line);
                said.push('\n');
                if let Some(port) = line.split("started successfully on port ").nth(1).and_then(|p| p.trim_end_matches('.').parse().ok()) {
                    let _ = tx.send(Ok(port));
                    // Keep draining its output so it never blocks on a full pipe.
                    for _ in lines.by_ref() {}
                    let _ = child.wait();
                    return;
                }
            }
            let _ = tx.send(Err(format!("chromedriver exited before listening:\n{said}")));
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| Err(e.to_string())).unwrap_or_else(|e| panic!("{e}"));
        format!("http://127.0.0.1:{port}")
    })
}

/// The installed versions, for the report (`chromium --version`).
pub fn versions() -> (String, String) {
    let v = |p: &str| Command::new(p).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    (v(CHROMIUM), v(CHROMEDRIVER))
}

/// A CONNECT proxy on 127.0.0.1 that tunnels `host:443` to the mapped
/// address and refuses every other target (the browser's own background
/// traffic goes nowhere).
pub async fn connect_proxy(map: &[(&str, SocketAddr)]) -> SocketAddr {
    let map: HashMap<String, SocketAddr> = map.iter().map(|(h, a)| (format!("{h}:443"), *a)).collect();
    let listener = authgear_gateway::runtime::net::bind_loopback().expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { continue };
            let map = map.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()).unwrap_or("");
                let Some(to) = map.get(target) else {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(to).await else { return };
                if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

/// One browser: a WebDriver session of headless Chromium.
pub struct Browser {
    /// `<driver>/session/<id>`.
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Synchronous on purpose: it also runs while a failed test unwinds,
        // and the browser must not outlive the test.
        let Some(rest) = self.base.strip_prefix("http://") else { return };
        let Some((authority, path)) = rest.split_once('/') else { return };
        if let Ok(mut s) = std::net::TcpStream::connect(authority) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(s, "DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

impl Browser {
    /// Starts headless Chromium whose https traffic goes through `proxy`
    /// (loopback origins are reached directly, as Chromium never proxies
    /// them). The test CA is not installed: `acceptInsecureCerts` lets the
    /// browser take the gateway's test certificate, and a secure context
    /// it stays (cookies are judged on the scheme, not on the CA).
    pub async fn start(proxy: SocketAddr) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-extensions", "--disable-sync", "--ignore-certificate-errors",
                format!("--proxy-server=http://{proxy}"),
            ]},
        }}});
        let v = call("POST", &format!("{}/session", driver()), Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        Browser { base: format!("{}/session/{id}", driver()) }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(method, &format!("{}{path}", self.base), body).await
    }

    /// Navigates the current tab and waits for the load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The current tab's URL.
    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The current page's text (`document.body.innerText`).
    pub async fn text(&self) -> String {
        self.run("return document.body ? document.body.innerText : ''", json!([])).await.as_str().unwrap_or_default().to_owned()
    }

    /// Polls until the current URL starts with `prefix` (10 s).
    pub async fn wait_url(&self, prefix: &str) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            last = self.url().await;
            if last.starts_with(prefix) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser never reached {prefix}; it is at {last}");
    }

    /// Clicks the first element `using` (`css selector`, `link text`,
    /// `partial link text`) matches.
    pub async fn click(&self, using: &str, value: &str) {
        let el = self.cmd("POST", "/element", Some(json!({"using": using, "value": value}))).await;
        let id = el[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {using} `{value}`: {el}")).to_owned();
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Every cookie the browser keeps for the current page's origin, with
    /// the attributes as it stored them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Runs a synchronous script in the page.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Runs a script that calls its last argument with the result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/async", Some(json!({"script": script, "args": []}))).await
    }

    /// Opens a new tab and returns its handle (the current tab stays).
    pub async fn new_tab(&self) -> String {
        let v = self.cmd("POST", "/window/new", Some(json!({"type": "tab"}))).await;
        v["handle"].as_str().unwrap_or_else(|| panic!("no tab: {v}")).to_owned()
    }

    /// The current tab's handle.
    pub async fn tab(&self) -> String {
        self.cmd("GET", "/window", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Makes `handle` the current tab.
    pub async fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", Some(json!({ "handle": handle }))).await;
    }
}

/// One WebDriver command: its `value`, or a panic with the driver's error.
async fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let a = send(method, url, &[("content-type", "application/json")], body.as_bytes()).await;
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("{method} {url}: not JSON ({}): {}", a.status, a.body));
    if !a.status.is_success() {
        panic!("{method} {url}: {} {}", a.status, v["value"]);
    }
    v["value"].clone()
}
