//! The live UI of a running pipeline: `/metrics` checked by promtool and scraped by a real
//! Prometheus server, `/api/progress`, the bearer token and the port fallback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::outage_support::Running;
use crate::support::free_port;

const PATIENCE: Duration = Duration::from_secs(120);

/// A streaming run from the generator with the UI on `ui`, until killed.
pub fn spawn_run(dir: &std::path::Path, ui: &str, token: Option<&str>) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
    command
        .args(["--lake", dir.join("lake").to_str().unwrap()])
        .args([
            "run",
            "clickstream-analytics",
            "--from-generator",
            "--rate",
            "3000",
            "--ui",
            ui,
        ])
        .current_dir(dir)
        .env_remove("DATA_LAKE_PATH")
        .env_remove("MYSQL_URL")
        .env_remove("QUICKCHAT_PROJECT")
        .env("QUICKCHAT_LOG", "info");
    match token {
        Some(token) => command.env("QUICKCHAT_UI_TOKEN", token),
        None => command.env_remove("QUICKCHAT_UI_TOKEN"),
    };
    Running::spawn(command)
}

/// The address the run's log says the UI listens on.
pub async fn ui_address(run: &mut Running) -> String {
    let line = run
        .wait_for_line("the live UI's address", |l| l.contains("live UI"))
        .await;
    let from = line.find("http://").expect("a URL") + "http://".len();
    let rest = &line[from..];
    rest[..rest.find('/').expect("a path after the address")].to_string()
}

/// `GET path` on `address`: status and body.
pub fn get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The samples of a text exposition, `name{labels}` -> value.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

pub fn sample(text: &str, series: &str) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(s, _)| s.starts_with(series))
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes until `series` (summed over its labels) passes `above`.
pub async fn scrape_until_above(address: &str, series: &str, above: f64) -> String {
    let started = Instant::now();
    loop {
        let (status, text) = get(address, "/metrics", None);
        assert_eq!(status, 200, "{text}");
        if sample(&text, series) > above {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{series} stayed at or under {above}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps.sh test installs Debian's prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Prometheus server scraping `target` every second, with its data in `dir`.
struct Prometheus {
    child: Child,
    address: String,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: &str) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: quickchat-etl\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/install-deps.sh test installs Debian's prometheus)");
        Self { child, address }
    }

    /// The first value of an instant query, once it has one above zero.
    async fn query_until_positive(&self, query: &str) -> f64 {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let started = Instant::now();
        loop {
            if let Ok(stream) = TcpStream::connect(&self.address) {
                drop(stream);
                let (status, body) = get(&self.address, &path, None);
                if status == 200 {
                    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let value = answer["data"]["result"][0]["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok());
                    if let Some(value) = value.filter(|v| *v > 0.0) {
                        return value;
                    }
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Prometheus never answered {query} above zero"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_running_pipeline_serves_metrics_promtool_accepts_and_prometheus_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = spawn_run(dir.path(), "127.0.0.1:0", None);
    let address = ui_address(&mut run).await;

    let first = scrape_until_above(&address, "quickchat_micro_batches_total", 0.0).await;
    promtool_check(&first);
    assert!(sample(&first, "process_resident_memory_bytes") > 0.0, "{first}");
    let batches = sample(&first, "quickchat_micro_batches_total");
    let later = scrape_until_above(&address, "quickchat_micro_batches_total", batches + 2.0).await;
    for (series, before) in samples(&first).into_iter().filter(|(s, _)| s.contains("_total")) {
        let after = sample(&later, &series);
        assert!(after >= before, "a counter went down: {series} {before} -> {after}");
    }
    assert!(
        sample(
            &later,
            "quickchat_records_read_total{pipeline=\"clickstream-analytics\",source=\"clickstream\"}"
        ) > sample(
            &first,
            "quickchat_records_read_total{pipeline=\"clickstream-analytics\",source=\"clickstream\"}"
        ),
        "records read grew:\n{later}"
    );
    assert!(
        sample(&later, "quickchat_state_bytes") > 0.0,
        "open windows take memory:\n{later}"
    );
    let age = "quickchat_checkpoint_age_seconds{pipeline=\"clickstream-analytics\"}";
    assert!(
        later.contains(age) && sample(&later, age) < PATIENCE.as_secs_f64(),
        "the time since the last checkpoint:\n{later}"
    );

    let (status, body) = get(&address, "/api/progress?last=3", None);
    assert_eq!(status, 200, "{body}");
    let progress: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(progress.len(), 3, "{body}");
    for batch in &progress {
        let from_sources: u64 = batch["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["num_input_rows"].as_u64().unwrap())
            .sum();
        assert_eq!(batch["num_input_rows"].as_u64(), Some(from_sources), "{batch}");
        for source in batch["sources"].as_array().unwrap() {
            let watermark = source["watermark"].as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(watermark).is_ok(),
                "a watermark in RFC 3339: {source}"
            );
        }
        assert!(batch["duration_ms"]["total"].as_f64().unwrap() > 0.0, "{batch}");
    }
    let ids: Vec<u64> = progress.iter().map(|b| b["batch_id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "the last three, in order: {ids:?}"
    );

    let prometheus = Prometheus::start(dir.path(), &address);
    let rate = prometheus
        .query_until_positive("sum(rate(quickchat_records_read_total[5s]))")
        .await;
    assert!(rate > 0.0);
    run.kill();
}

#[tokio::test]
async fn the_ui_asks_for_its_token_answers_unknown_paths_with_404_and_takes_the_next_free_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut run = spawn_run(dir.path(), &format!("127.0.0.1:{port}"), Some("s3cret"));
    let address = ui_address(&mut run).await;
    let served_port: u16 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(
        served_port > port,
        "port {port} is taken, so the UI is on a later one: {address}"
    );

    let (status, body) = get(&address, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("QUICKCHAT_UI_TOKEN"), "{body}");
    assert_eq!(get(&address, "/metrics", Some("wrong")).0, 401);
    let (status, body) = get(&address, "/metrics", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&address, "/api/nothing", Some("s3cret"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/api/nothing"), "{body}");
    run.kill();
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_drops_to_zero_once_caught_up_and_the_json_progress_line_is_the_api_object() {
    use crate::stream_support::{StreamProject, input_files, produce_files};
    use crate::support::TestLake;
    const PIPELINE: &str = "clickstream-analytics";
    let project = StreamProject::new(500).await;
    let pipeline = project.pipeline(PIPELINE);
    project.create_topics(&pipeline).await;
    let produced = produce_files(&pipeline, &input_files(&pipeline, 6_000, 31)).await;
    let lake = TestLake::local();
    let mut command = project.command(&lake, &["--log-format", "json", "run", PIPELINE, "--ui", "127.0.0.1:0"]);
    command.env("QUICKCHAT_LOG", "info");
    let mut run = Running::spawn(command);
    let address = ui_address(&mut run).await;

    // Everything read: the lag of every partition is known and 0.
    let text = scrape_until_above(&address, "quickchat_records_read_total", produced as f64 - 1.0).await;
    assert_eq!(sample(&text, "quickchat_records_read_total"), produced as f64, "{text}");
    let lags: Vec<(String, f64)> = samples(&text)
        .into_iter()
        .filter(|(s, _)| s.starts_with("quickchat_source_lag_records"))
        .collect();
    let partitions = pipeline.sources.len() * 3;
    assert_eq!(lags.len(), partitions, "a lag per partition:\n{text}");
    assert!(lags.iter().all(|(_, lag)| *lag == 0.0), "caught up: {lags:?}");

    // While it was reading, 500 records at a time, it was behind.
    let (_, body) = get(&address, "/api/progress?last=100", None);
    let progress: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let behind = |batch: &serde_json::Value| -> i64 {
        batch["sources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|source| {
                let latest = source["latest_offset"].as_object().unwrap().clone();
                let end = source["end_offset"].clone();
                latest
                    .into_iter()
                    .map(move |(p, at)| at.as_i64().unwrap() - end[&p].as_i64().unwrap())
            })
            .sum()
    };
    assert!(
        behind(&progress[0]) > 0,
        "the first micro-batch left records behind: {}",
        progress[0]
    );
    assert_eq!(behind(progress.last().unwrap()), 0, "{body}");

    // In a browser, the live page draws that lag: above 0 while behind, 0 at the last batch.
    let shot = crate::browser::screenshots().join("live-page-kafka.png");
    let page = format!("http://{address}/");
    let seen = crate::browser::browse(
        "live_page.mjs",
        vec![page, shot.to_str().unwrap().into(), "once".into()],
    )
    .await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    let lag = |what: &str| seen["first"][what]["lag"].as_f64().unwrap_or(-1.0);
    assert!(seen["first"]["points"]["lag"].as_u64() > Some(1), "{seen}");
    assert!(
        lag("max") > 0.0 && lag("last") == 0.0,
        "lag drawn {} at most, {} last: {seen}",
        lag("max"),
        lag("last")
    );

    // The progress log line carries the same object as the API.
    let line = run
        .wait_for_line("a JSON progress line", |l| l.contains("\"message\":\"progress\""))
        .await;
    let logged: serde_json::Value = serde_json::from_str(&line).unwrap();
    let logged = &logged["progress"];
    let batch_id = logged["batch_id"].as_u64().expect("a batch id");
    let (_, body) = get(&address, "/api/progress?last=100", None);
    let recent: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let same = recent
        .iter()
        .find(|b| b["batch_id"].as_u64() == Some(batch_id))
        .expect("the logged micro-batch is among the recent ones");
    assert_eq!(logged, same);
    run.kill();
    project.drop_database().await;
}

#[test]
fn the_shipped_prometheus_config_alert_rules_and_grafana_queries_pass_promtool() {
    let docker = crate::support::repo_root().join("docker");
    // The Grafana dashboard's queries, with its variables filled in, as recording rules:
    // `promtool check rules` parses each one.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docker.join("grafana/quickchat-etl.json")).unwrap()).unwrap();
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$pipeline", ".*")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "a variable left in {expr}");
            rules += &format!(
                "      - record: grafana:panel\n        expr: {}\n",
                serde_json::json!(expr)
            );
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let grafana_rules = scratch.path().join("grafana-queries.yml");
    std::fs::write(&grafana_rules, rules).unwrap();
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["test", "rules", "quickchat-alerts.test.yml"][..],
        &["check", "rules", grafana_rules.to_str().unwrap()][..],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&docker)
            .output()
            .expect("promtool (scripts/install-deps.sh test installs Debian's prometheus)");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}",
            crate::support::describe(&output)
        );
    }
}

#[test]
fn an_address_that_cannot_be_served_exits_2_and_no_ui_serves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let run = |ui: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_quickchat-etl"))
            .args(["--lake", lake.to_str().unwrap()])
            .args(["run", "clickstream-analytics", "--from-generator", "--duration", "2s"])
            .args(ui)
            .current_dir(dir.path())
            .env_remove("MYSQL_URL")
            .env_remove("QUICKCHAT_PROJECT")
            .env_remove("QUICKCHAT_UI_TOKEN")
            .env("QUICKCHAT_LOG", "info")
            .output()
            .unwrap()
    };
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: asked for, it is an error.
    let refused = run(&["--ui", "192.0.2.1:4040"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        refused.status.code(),
        crate::support::exit(quickchat_etl::ExitCode::Usage),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot serve on 192.0.2.1:4040") && stderr.contains("--no-ui"),
        "{stderr}"
    );
    let without = run(&["--no-ui"]);
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(without.status.success(), "{stderr}");
    assert!(
        stderr.contains("streaming") && !stderr.contains("live UI"),
        "no UI: {stderr}"
    );
}

#[test]
fn a_configured_address_with_every_next_port_taken_runs_the_stream_without_the_ui() {
    // The configured address and the 20 ports after it, all held here.
    let held: Vec<std::net::TcpListener> = loop {
        let first = free_port();
        let listeners: Vec<_> = (first..=first + 20)
            .map_while(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == 21 {
            break listeners;
        }
    };
    let first = held[0].local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quickchat.toml");
    std::fs::write(&config, format!("[ui]\nlisten = \"127.0.0.1:{first}\"\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--lake", dir.path().join("lake").to_str().unwrap()])
        .args(["run", "clickstream-analytics", "--from-generator", "--duration", "2s"])
        .current_dir(dir.path())
        .env_remove("MYSQL_URL")
        .env_remove("QUICKCHAT_PROJECT")
        .env("QUICKCHAT_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the stream goes on: {stderr}");
    assert!(
        stderr.contains("running without the live UI") && stderr.contains(&format!("ports {first} to {}", first + 20)),
        "{stderr}"
    );
    drop(held);
}
