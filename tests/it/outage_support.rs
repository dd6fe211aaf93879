//! What the outage tests stop and start: a server of their own (MariaDB, Apache Kafka or MinIO,
//! started by `scripts/services.sh` in a folder of the test, on free ports), a small tmpfs for
//! the lake, and a run of the binary whose log lines the test watches as they come.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// Longest wait for something a test waits for.
const PATIENCE: Duration = Duration::from_secs(180);

/// The bucket on an S3 server of the test's own. Not the shared server's: the process's
/// DataFusion runtime keeps one object store per scheme and bucket (deltalake registers each
/// table's store under `s3://<bucket>` and never replaces one), so two lakes in one bucket on
/// two servers would read each other's.
pub const OWN_BUCKET: &str = "quickchat-own";

/// One server of the test's own, started and stopped by `scripts/services.sh`.
pub struct OwnServer {
    dir: tempfile::TempDir,
    service: &'static str,
    pub port: u16,
}

impl OwnServer {
    /// Starts `service` (`mariadb`, `kafka` or `s3`) on a free port.
    pub fn start_new(service: &'static str) -> Self {
        let server = Self {
            dir: tempfile::tempdir().unwrap(),
            service,
            port: free_port(),
        };
        server.start();
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn services(&self, args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        let output = Command::new(script)
            .args(args)
            .env("QUICKCHAT_SERVICES_DIR", self.dir.path())
            .env("QUICKCHAT_MYSQL_PORT", self.port.to_string())
            .env("QUICKCHAT_KAFKA_PORT", self.port.to_string())
            .env("QUICKCHAT_S3_PORT", self.port.to_string())
            .env("QUICKCHAT_S3_BUCKET", OWN_BUCKET)
            .env_remove("QUICKCHAT_TEST_MYSQL_URL")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "services.sh {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server (again, on the same data).
    pub fn start(&self) {
        self.services(&["start", self.service]);
    }

    /// Stops the server and waits until it ended.
    pub fn stop(&self) {
        self.services(&["stop"]);
        assert!(
            std::net::TcpStream::connect(self.address()).is_err(),
            "{} still answers on {}",
            self.service,
            self.address()
        );
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.services(&["stop"]);
    }
}

/// A tmpfs of `megabytes` mounted on a new folder (root only: `None` elsewhere), unmounted
/// when dropped.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file until it is full; returns the file.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A run of the binary whose standard error is collected line by line as it comes.
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                collected.lock().unwrap().push(line);
            }
        });
        Self { child, lines, reader }
    }

    /// Waits until a line of standard error satisfies `wanted`, and returns it.
    pub async fn wait_for_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| wanted(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the run ended ({status}) before {what}:\n{}", self.stderr());
            }
            assert!(started.elapsed() < PATIENCE, "no {what} in:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for the run to end, which must be a success: its standard error.
    pub fn finish_ok(mut self) -> String {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let stderr = self.lines.lock().unwrap().join("\n");
        assert!(status.success(), "{status}\n{stdout}\n{stderr}");
        stderr
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Waits until `done` holds.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Epochs a pipeline's run from `input` (`files`, `kafka`) committed in a local lake.
pub fn commits(lake_root: &str, pipeline: &str, input: &str) -> usize {
    let folder = Path::new(lake_root)
        .join("_checkpoints")
        .join(pipeline)
        .join(input)
        .join("commits");
    std::fs::read_dir(folder).map(|d| d.count()).unwrap_or(0)
}
