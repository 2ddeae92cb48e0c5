//! A real `redis-server` (installed by `.ci/install-servers.sh`) on a free
//! loopback port, without persistence, that a test can stop and start
//! again on the same port; and a plain client to look at what the gateway
//! stored.

use std::process::Command;

use super::process::{free_port, ChildServer};

/// One redis-server of one test.
pub struct Redis {
    pub port: u16,
    server: Option<ChildServer>,
}

async fn spawn(port: u16) -> ChildServer {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"]);
    ChildServer::start("redis-server", cmd, port).await
}

impl Redis {
    pub async fn start() -> Redis {
        let port = free_port();
        Redis { port, server: Some(spawn(port).await) }
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (everything stored is lost: no persistence).
    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Starts a new server on the same port.
    pub async fn restart(&mut self) {
        self.server = Some(spawn(self.port).await);
    }

    fn conn(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("connect to the test redis")
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        ::redis::cmd("KEYS").arg(pattern).query(&mut self.conn()).expect("KEYS")
    }

    /// The string value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        ::redis::cmd("GET").arg(key).query(&mut self.conn()).expect("GET")
    }

    /// The time to live of `key` in milliseconds (-2: no such key).
    pub fn pttl(&self, key: &str) -> i64 {
        ::redis::cmd("PTTL").arg(key).query(&mut self.conn()).expect("PTTL")
    }
}
