//! A batch run's final metrics: pushed to a real Pushgateway (Debian's
//! `prometheus-pushgateway`) and written as a node exporter textfile, with the same figures the
//! lake holds; a failed job pushed as failed; a gateway that is away leaves the exit code alone.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::live_ui::promtool_check;
use crate::support::free_port;
use crate::support::{binary, describe, generate_landing};

/// A Pushgateway on a free port, keeping nothing on disk.
struct Pushgateway {
    child: Child,
    address: String,
}

impl Pushgateway {
    fn start() -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway (scripts/install-deps.sh test installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Pushgateway never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, address }
    }

    fn metrics(&self) -> String {
        // HTTP/1.0: the gateway's answer comes whole, not in chunks.
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.address).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count(*)` of `bronze.messages` in the lake a run in `dir` wrote.
fn messages_in_lake(dir: &std::path::Path) -> f64 {
    let count = binary(
        dir,
        &[
            "sql",
            "-e",
            "SELECT count(*) AS n FROM bronze.messages",
            "--format",
            "csv",
        ],
    );
    let text = String::from_utf8_lossy(&count.stdout);
    let n = text.lines().nth(1).and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("a count: {}", describe(&count)))
}

/// The value of the one sample whose line starts with `name{` and has every label of `labels`.
fn value_of(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label)))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} is one series:\n{text}");
    found.first().copied()
}

#[test]
fn a_batch_run_pushes_and_writes_its_final_figures_per_job() {
    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 12, 2);
    let gateway = Pushgateway::start();
    let push = format!("http://{}", gateway.address);
    let file = dir.path().join("bronze.prom");

    let run = binary(
        dir.path(),
        &[
            "run",
            "bronze-all",
            "--metrics-push",
            &push,
            "--metrics-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", describe(&run));
    let written = std::fs::read_to_string(&file).unwrap();
    promtool_check(&written);
    let messages = messages_in_lake(dir.path());
    assert!(messages > 0.0);
    let job = "job_name=\"bronze-messages\"";
    assert_eq!(
        value_of(&written, "quickchat_job_rows_written", &[job]),
        Some(messages),
        "{written}"
    );
    assert_eq!(
        value_of(&written, "quickchat_job_success", &[job, "status=\"ok\""]),
        Some(1.0),
        "{written}"
    );

    // The gateway holds the same figures, grouped under the binary and the run's target.
    let pushed = gateway.metrics();
    let group = ["job=\"quickchat-etl\"", "target=\"bronze-all\"", job];
    assert_eq!(
        value_of(&pushed, "quickchat_job_rows_written", &group),
        Some(messages),
        "{pushed}"
    );
    assert_eq!(
        value_of(&pushed, "quickchat_job_rows_read", &group),
        value_of(&written, "quickchat_job_rows_read", &[job]),
        "{pushed}"
    );

    // A failed job is pushed as failed, and the run still exits with the job's code.
    let failed = binary(dir.path(), &["run", "gold-daily-metrics", "--metrics-push", &push]);
    assert_eq!(failed.status.code(), Some(4), "{}", describe(&failed));
    let pushed = gateway.metrics();
    assert_eq!(
        value_of(
            &pushed,
            "quickchat_job_success",
            &[
                "target=\"gold-daily-metrics\"",
                "job_name=\"gold-daily-metrics\"",
                "status=\"failed\""
            ]
        ),
        Some(0.0),
        "{pushed}"
    );

    // A gateway that is away is logged; the run's own outcome decides the exit code.
    let away = format!("http://127.0.0.1:{}", free_port());
    let run = binary(dir.path(), &["run", "bronze-users", "--metrics-push", &away]);
    assert!(run.status.success(), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("were not pushed") && stderr.contains(&away[7..]),
        "{}",
        describe(&run)
    );
}

/// A batch run serves its figures while it runs: the jobs done, the one running, the ones
/// waiting. `bronze-users` is held by a write lock on its MariaDB table, so the run is in the
/// middle for as long as the test needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_serves_its_jobs_figures_while_it_runs() {
    use mysql_async::prelude::Queryable;

    use crate::live_ui::{get, ui_address};
    use crate::outage_support::{Running, wait_until};
    use crate::support::users_database;

    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 12, 2);
    let (mut admin, url, database) = users_database("quickchat_ui").await;
    let mut holder = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    holder.query_drop("LOCK TABLES users WRITE").await.unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
    command
        .args(["run", "bronze-all", "--ui", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("DATA_LAKE_PATH")
        .env_remove("QUICKCHAT_PROJECT")
        .env("MYSQL_URL", &url)
        .env("QUICKCHAT_LOG", "info");
    let mut run = Running::spawn(command);
    let address = ui_address(&mut run).await;
    let status = || -> serde_json::Value {
        let (code, body) = get(&address, "/api/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let job_status = |status: &serde_json::Value, job: &str| -> String {
        let jobs = status["jobs"].as_array().unwrap();
        let found = jobs
            .iter()
            .find(|j| j["job"] == job)
            .unwrap_or_else(|| panic!("{status}"));
        found["status"].as_str().unwrap().to_string()
    };
    wait_until("bronze-users running, waiting for its table", || {
        job_status(&status(), "bronze-users") == "running"
    })
    .await;

    let now = status();
    assert_eq!(now["target"], "bronze-all");
    assert_eq!(now["status"], "running", "{now}");
    assert_eq!(job_status(&now, "bronze-messages"), "ok", "{now}");
    let (code, text) = get(&address, "/metrics", None);
    assert_eq!(code, 200, "{text}");
    promtool_check(&text);
    let users = "job_name=\"bronze-users\"";
    let messages = "job_name=\"bronze-messages\"";
    assert_eq!(value_of(&text, "quickchat_job_running", &[users]), Some(1.0), "{text}");
    assert_eq!(
        value_of(&text, "quickchat_job_success", &[users]),
        None,
        "not ended: {text}"
    );
    assert_eq!(
        value_of(&text, "quickchat_job_success", &[messages, "status=\"ok\""]),
        Some(1.0),
        "{text}"
    );
    let written = value_of(&text, "quickchat_job_rows_written", &[messages]).expect("bronze-messages's rows");
    assert!(written > 0.0, "{text}");
    assert!(
        text.contains("process_resident_memory_bytes "),
        "the process's own figures: {text}"
    );

    // Let the table go: the run ends, and its final figures are what the UI showed.
    holder.query_drop("UNLOCK TABLES").await.unwrap();
    let stderr = run.finish_ok();
    assert!(stderr.contains("bronze-users"), "{stderr}");
    assert_eq!(written, messages_in_lake(dir.path()));
    drop(holder);
    admin.query_drop(format!("DROP DATABASE {database}")).await.unwrap();
}
