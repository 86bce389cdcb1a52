//! A `warren` process started by a test (for what an in-process broker cannot show: kill -9, a
//! power cut, the command line): loopback only, every port chosen by the OS and read from its
//! startup lines. Dropping it kills the process, so no broker outlives a failed test.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `warren` process.
pub struct Warren {
    /// The process.
    pub child: Child,
    /// Its AMQP listener.
    pub amqp: SocketAddr,
    /// Its management HTTP port.
    pub http: u16,
}

impl Warren {
    /// Start `warren` on data directory `dir` with extra environment variables, and wait for
    /// `Server startup complete`.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Warren {
        Warren::start_with_args(dir, env, &[])
    }

    /// [`Warren::start`] with more command-line flags.
    pub fn start_with_args(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Warren {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .envs(env.iter().copied())
            .args(super::PROCESS_ARGS)
            .args(["--log-level", "warn", "--data-dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port_of = |l: &str| l.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
        let (mut amqp, mut http) = (0, 0);
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if let Some(a) = line.strip_prefix("Listening for AMQP on ") {
                amqp = port_of(a);
            }
            if let Some(a) = line.strip_prefix("Listening for HTTP on ") {
                http = port_of(a);
            }
            if line == "Server startup complete" {
                break;
            }
        }
        assert!(amqp > 0, "warren did not start");
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Warren { child, amqp: SocketAddr::from(([127, 0, 0, 1], amqp)), http }
    }

    /// The process's resident memory (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill9(self) {
        drop(self);
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
