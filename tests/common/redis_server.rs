//! A real `redis-server` on a free loopback port for the cluster tests, without
//! persistence; killed when dropped. `None` (the test says it skips) when the
//! binary is missing: `scripts/deps.sh test` installs it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

fn binary() -> Option<String> {
    let candidates = ["redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server"];
    candidates.into_iter().map(str::to_owned).find(|path| {
        Command::new(path).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    })
}

impl RedisServer {
    /// A new server on a free port, or `None` (with a message) without redis-server.
    pub async fn start() -> Option<RedisServer> {
        if binary().is_none() {
            eprintln!(
                "SKIPPED: redis-server not found (install it: scripts/deps.sh test, or apt-get install redis-server)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { child: None, port };
        server.restart().await;
        Some(server)
    }

    /// redis://127.0.0.1:PORT
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, empty) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new(binary().expect("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let url = self.url();
        let answers = super::eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { ping(&url).await }
        })
        .await;
        assert!(answers, "redis-server did not answer on port {}", self.port);
    }

    /// SIGKILL: Redis is gone, with everything it held.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every key in the server.
    pub async fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis connects");
        redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("KEYS")
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
