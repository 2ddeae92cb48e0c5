//! The real binary's log, written to a file as a service manager or a
//! container runtime would: no colour escape codes outside a terminal,
//! one access line per request in either format, and none lost when the
//! process stops (the writer thread batches lines while busy).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use support::front::*;
use support::process::free_port;
use tokio::net::TcpStream;

const REQUESTS: usize = 300;

/// Runs the gateway with `format` (None: the default text format), its
/// stderr in a file, sends [`REQUESTS`] requests over four keep-alive
/// connections, stops it with SIGTERM and returns the log.
async fn log_of_a_run(format: Option<&str>) -> String {
    let up = spawn_server(None, |_req: Request<Incoming>| async { Response::new(full("ok")) }).await;
    let dir = temp_dir("log-lines");
    let port = free_port();
    let mut text = public_config(&format!("http://{up}"), "", "", PUBLIC_ALL).replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1);
    if let Some(f) = format {
        text.push_str(&format!("\n[log]\nformat = \"{f}\"\n"));
    }
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).expect("write config");
    let log_path = dir.join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgear-gateway"))
        .args(["--config", &config.display().to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the gateway");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the gateway never listened:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(async move {
            let mut c = h1_client(TcpStream::connect(addr).await.expect("connect")).await;
            for i in 0..REQUESTS / 4 {
                let req = Request::get(format!("/page/{i}")).header("host", "app").body(full("")).unwrap();
                let resp = c.send_request(req).await.expect("request");
                assert_eq!(resp.status(), StatusCode::OK);
                read_all(resp.into_body()).await;
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    // SAFETY: kill(2) on the child we spawned; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&log_path).expect("read the log");
    let _ = std::fs::remove_dir_all(dir);
    log
}

#[tokio::test]
async fn text_log_in_a_file_has_no_colour_codes_and_a_line_for_every_request() {
    let log = log_of_a_run(None).await;
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{}", &log[..log.len().min(400)]);
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" INFO access: request ")).collect();
    assert_eq!(access.len(), REQUESTS, "access lines");
    let line = access[0];
    // `2026-12-02T13:41:56.519015Z  INFO access: request request_id="..." ...`
    assert_eq!(line.as_bytes()[10], b'T', "{line}");
    assert!(line[..27].ends_with('Z'), "{line}");
    for field in ["method=\"GET\"", "route=\"/**\"", "status=200", "bytes_out=2", "client=127.0.0.1", "complete=true"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(access.iter().any(|l| l.contains(r#"path="/page/0""#)), "{line}");
    assert!(log.contains("gateway stopped"), "the last line was lost");
}

#[tokio::test]
async fn json_log_has_a_parsable_line_for_every_request() {
    let log = log_of_a_run(Some("json")).await;
    assert!(!log.contains('\u{1b}'));
    let mut access = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "access" {
            access += 1;
            assert_eq!(v["status"], 200);
            assert_eq!(v["method"], "GET");
            assert_eq!(v["complete"], true);
        }
    }
    assert_eq!(access, REQUESTS, "access lines");
}
