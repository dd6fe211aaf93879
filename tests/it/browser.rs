//! The web pages in a real browser: headless Debian Chromium, driven by the scripts in
//! `web/tests/` through playwright-core (installed by `scripts/vendor-web.sh install`, which
//! `scripts/install-deps.sh test` runs). Screenshots go to `<target>/tmp/screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::live_ui::{get, spawn_run, ui_address};
use crate::outage_support::{Running, wait_until};
use crate::support::{binary, describe, repo_root};

/// Where the tests leave their screenshots.
pub fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `node web/tests/<script> <args>` and returns the JSON line it prints last.
pub async fn browse(script: &str, args: Vec<String>) -> Value {
    browsing(script, args).await.unwrap()
}

/// `node web/tests/<script> <args>` started: its JSON line when it ends.
fn browsing(script: &str, args: Vec<String>) -> tokio::task::JoinHandle<Value> {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let path = repo_root().join("web/tests").join(&script);
        let output = Command::new("node")
            .arg(path)
            .args(args)
            .output()
            .expect("node (Node.js) on the PATH");
        assert!(output.status.success(), "{script}: {}", describe(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {stdout:?}: {e}"))
    })
}

fn status(address: &str, token: &str) -> Value {
    let (code, body) = get(address, "/api/status", Some(token));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn number(value: &Value) -> f64 {
    match value {
        Value::String(text) => text.parse().unwrap_or_else(|_| panic!("a number: {value}")),
        other => other.as_f64().unwrap_or_else(|| panic!("a number: {other}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_draws_its_charts_shows_the_runs_figures_and_refreshes_itself() {
    let token = "live-page-secret";
    let dir = tempfile::tempdir().unwrap();
    let mut run = spawn_run(dir.path(), "127.0.0.1:0", Some(token));
    let address = ui_address(&mut run).await;
    assert_eq!(get(&address, "/", None).0, 401, "the page wants the token too");
    let before = status(&address, token);
    let shot = screenshots().join("live-page.png");
    // The token once in the address: the page keeps it (a cookie for its scripts, a bearer
    // header for its requests).
    let url = format!("http://{address}/?token={token}&refresh=1");
    let seen = browse("live_page.mjs", vec![url, shot.to_str().unwrap().to_string()]).await;
    let after = status(&address, token);

    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["notReloaded"], true, "refreshed in place: {seen}");
    let (first, later) = (&seen["first"], &seen["later"]);
    assert_eq!(first["pipeline"], "clickstream-analytics");
    assert_eq!(later["status"], "running", "{later}");
    assert!(later["lastError"].is_null(), "{later}");
    // The figures shown are the run's: between what the API said before and after.
    let read = |status: &Value| status["pipelines"][0]["records_read"].as_f64().unwrap_or(0.0);
    let shown = number(&first["kpis"]["records_read"]);
    assert!(
        read(&before) <= shown && shown <= read(&after) && shown > 0.0,
        "records read shown {shown}, API before {before} after {after}"
    );
    let epoch = |view: &Value| number(&view["kpis"]["last_epoch"]);
    assert!(epoch(later) > epoch(first) && epoch(later) <= number(&after["pipelines"][0]["last_epoch"]));
    assert!(number(&later["kpis"]["state_rows"]) > 0.0, "{later}");
    // Every chart with figures for this input is drawn (a generator has no Kafka lag).
    for chart in ["rates", "duration", "watermark", "state", "refused"] {
        assert!(
            later["drawn"].as_array().unwrap().iter().any(|c| c == chart),
            "chart {chart} drawn: {later}"
        );
        assert!(later["points"][chart].as_u64().unwrap() > 1, "{chart}: {later}");
    }
    assert!(
        later["points"]["rates"].as_u64() > first["points"]["rates"].as_u64(),
        "the charts grew with the stream: {seen}"
    );
    // The state tables, as /api/state lists them.
    let (code, body) = get(&address, "/api/state", Some(token));
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let state = |tables: &Value| -> Vec<(String, String)> {
        let pairs = tables.as_array().unwrap().iter().map(|t| {
            let field = |a: &str, b: &str| t[a].as_str().or(t[b].as_str()).unwrap().to_string();
            (field("table", "name"), field("operator", "operator"))
        });
        pairs.collect()
    };
    assert_eq!(state(&later["state"]), state(&listed["tables"]), "{later}");
    assert!(
        state(&later["state"]).contains(&("sessions".into(), "session aggregate".into())),
        "{later}"
    );
    // One box per output, with the columns the API gives for its rows.
    let outputs: Vec<&str> = later["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["output"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = after["pipelines"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(
        outputs.iter().all(|o| expected.contains(o)) && outputs.contains(&"page_views"),
        "shown {outputs:?}, the pipeline's {expected:?}"
    );
    let (code, body) = get(&address, "/api/latest/page_views", Some(token));
    assert_eq!(code, 200, "{body}");
    let latest: Value = serde_json::from_str(&body).unwrap();
    let page_views = later["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output"] == "page_views")
        .unwrap();
    assert_eq!(page_views["columns"], latest["changed"]["columns"], "{page_views}");
    assert!(page_views["rows"].as_u64().unwrap() > 0, "{page_views}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot at {shot:?}"
    );
    run.kill();
}

/// The shipped dashboards and their charts, as the files say.
fn shipped_dashboards() -> Vec<(String, toml::Table)> {
    let mut all: Vec<(String, toml::Table)> = std::fs::read_dir(repo_root().join("dashboards"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap().parse().unwrap())
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The first row of `sql` run through `quickchat-etl sql -e --format json` over `lake`.
fn first_row(dir: &std::path::Path, lake: &str, sql: &str) -> serde_json::Map<String, Value> {
    let output = binary(dir, &["--lake", lake, "sql", "--format", "json", "-e", sql]);
    assert!(output.status.success(), "{sql}: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or("{}")).unwrap()
}

/// A JSON value as the page's data attributes write it.
fn as_shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether what the page shows is `expected`: the same text, or the same number (JavaScript
/// writes 20.0 as 20).
fn same_shown(shown: &Value, expected: &str) -> bool {
    let shown = shown.as_str().unwrap_or_default();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    shown == expected || matches!((shown.parse::<f64>(), expected.parse::<f64>()), (Ok(a), Ok(b)) if close(a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_dashboard_draws_over_the_demo_lake_shows_what_sql_says_and_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap();
    let run = |args: &[&str]| {
        let output = binary(dir.path(), &[&["--lake", lake][..], args].concat());
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        output
    };
    let demo = run(&["demo"]);
    assert!(
        String::from_utf8_lossy(&demo.stdout).contains("quickchat-etl serve"),
        "demo ends with the serve command: {}",
        describe(&demo)
    );
    for pipeline in ["clickstream-analytics", "chat-analytics", "interaction-analytics"] {
        run(&["run", pipeline, "--from-generator", "--duration", "4s", "--no-ui"]);
    }

    let mut serve = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
    serve
        .args(["--lake", lake, "serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("QUICKCHAT_PROJECT")
        .env_remove("QUICKCHAT_UI_TOKEN");
    let mut server = Running::spawn(serve);
    let line = server
        .wait_for_line("the dashboards' address", |l| l.contains("dashboards at http://"))
        .await;
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
    let address = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let base = format!("http://{address}");
    // Unknown dashboards and charts are 404s naming what there is; a bad range is a 400.
    let (code, body) = get(&address, "/api/dashboards/nothing", None);
    assert!(code == 404 && body.contains("clickstream"), "{code} {body}");
    let (code, body) = get(&address, "/api/dashboards/chat/nothing", None);
    assert!(code == 404 && body.contains("latency"), "{code} {body}");
    let (code, body) = get(&address, "/api/dashboards/chat/latency?from=yesterday", None);
    assert!(code == 400 && body.contains("from=\"yesterday\""), "{code} {body}");

    let shipped = shipped_dashboards();
    let names: Vec<String> = shipped.iter().map(|(name, _)| name.clone()).collect();
    let shots = screenshots();
    let watching = shots.join("watching");
    let _ = std::fs::remove_file(&watching);
    let mut args = vec![
        base.clone(),
        shots.to_str().unwrap().to_string(),
        "clickstream".into(),
        "views".into(),
    ];
    args.extend(names.iter().cloned());
    let browser = browsing("dashboards.mjs", args);
    // Once the page watches the views KPI, the stream goes on: auto-refresh must show it.
    wait_until("the page watching clickstream", || watching.exists()).await;
    // (The generator's run ended its input: a fresh start gives new events, in new windows.)
    run(&["checkpoints", "clickstream-analytics", "--reset"]);
    run(&[
        "run",
        "clickstream-analytics",
        "--from-generator",
        "--duration",
        "3s",
        "--no-ui",
    ]);
    let seen = browser.await.unwrap();

    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["listed"], serde_json::json!(names), "the list page: {seen}");
    for (name, file) in &shipped {
        let charts = &seen["dashboards"][name];
        for chart in file["chart"].as_array().unwrap() {
            let chart_name = chart["name"].as_str().unwrap();
            let shown = &charts[chart_name];
            assert_eq!(shown["state"], "drawn", "{name}/{chart_name}: {shown}");
            assert!(
                shown["rows"].as_u64().unwrap() > 0,
                "{name}/{chart_name} has rows: {shown}"
            );
            let kind = chart["kind"].as_str().unwrap();
            if ["line", "area", "bar"].contains(&kind) {
                assert!(
                    shown["canvas"].as_u64().unwrap() > 0,
                    "{name}/{chart_name} drawn: {shown}"
                );
            }
            // What a KPI or a top-N list shows is what the same SQL gives (the queries that
            // do not depend on the time range).
            let sql = chart["sql"].as_str().unwrap();
            if sql.contains('$') || name == "clickstream" {
                continue;
            }
            match kind {
                "kpi" => {
                    let row = first_row(dir.path(), lake, sql);
                    let expected = as_shown(&row[chart["value"].as_str().unwrap()]);
                    assert!(
                        same_shown(&shown["kpi"], &expected),
                        "{name}/{chart_name} shows {} where SQL gives {expected}: {sql}",
                        shown["kpi"]
                    );
                }
                "top" => {
                    let row = first_row(dir.path(), lake, &format!("{sql} LIMIT 1"));
                    let label = as_shown(&row[chart["label"].as_str().unwrap()]);
                    let value = as_shown(&row[chart["value"].as_str().unwrap()]);
                    let first = &shown["top"][0];
                    assert!(
                        same_shown(&first[0], &label) && same_shown(&first[1], &value),
                        "{name}/{chart_name} shows {first} first where SQL gives {label} {value}: {sql}"
                    );
                    assert!(shown["top"].as_array().unwrap().len() <= 5, "?top=5: {shown}");
                }
                _ => {}
            }
        }
        assert!(shots.join(format!("dashboard-{name}.png")).exists());
    }
    let watched = &seen["watched"];
    let views = |key: &str| watched[key].as_str().unwrap().parse::<f64>().unwrap();
    assert!(
        views("later") > views("first"),
        "auto-refresh showed the new views: {watched}"
    );
    assert_eq!(watched["notReloaded"], true);
    server.kill();
}

#[test]
fn the_embedded_chart_library_is_the_one_the_lock_file_pins() {
    let web = repo_root().join("web");
    for (vendored, installed) in [
        (
            "vendor/uplot/uPlot.iife.min.js",
            "node_modules/uplot/dist/uPlot.iife.min.js",
        ),
        ("vendor/uplot/uPlot.min.css", "node_modules/uplot/dist/uPlot.min.css"),
    ] {
        let installed = std::fs::read(web.join(installed))
            .expect("web/node_modules (scripts/vendor-web.sh install, run by scripts/install-deps.sh test)");
        assert!(
            std::fs::read(web.join(vendored)).unwrap() == installed,
            "web/{vendored} is not the locked package's file: run scripts/vendor-web.sh"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chart_answers_its_error_while_the_others_draw_and_dashboards_only_read() {
    let project = crate::support::project_copy();
    let dashboards = project.path().join("dashboards");
    std::fs::write(
        dashboards.join("broken.toml"),
        r#"title = "Broken on purpose"
[[chart]]
name = "fine"
title = "Fine"
kind = "kpi"
sql = "SELECT 41 + 1 AS n"
value = "n"
[[chart]]
name = "missing"
title = "A table that is not there"
kind = "table"
sql = "SELECT * FROM gold.nothing_here"
[[chart]]
name = "writes"
title = "A write"
kind = "table"
sql = "CREATE TABLE gold.written AS SELECT 1 AS n"
"#,
    )
    .unwrap();
    std::fs::write(dashboards.join("unreadable.toml"), "title = 1\n").unwrap();
    let lake = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
    serve
        .args(["--project", project.path().to_str().unwrap()])
        .args([
            "--lake",
            lake.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("QUICKCHAT_UI_TOKEN");
    let mut server = Running::spawn(serve);
    let line = server
        .wait_for_line("the dashboards' address", |l| l.contains("dashboards at http://"))
        .await;
    let address = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // The file that does not parse is left out, named in the log; the others are served.
    assert!(
        server.stderr().contains("dashboards/unreadable.toml"),
        "{}",
        server.stderr()
    );
    let (code, list) = get(&address, "/api/dashboards", None);
    assert_eq!(code, 200, "{list}");
    assert!(
        list.contains("\"broken\"") && !list.contains("\"unreadable\""),
        "{list}"
    );

    let (code, body) = get(&address, "/api/dashboards/broken/fine", None);
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"columns":["n"],"rows":[[42]],"truncated":false}"#)
    );
    let (code, body) = get(&address, "/api/dashboards/broken/missing", None);
    assert!(
        code == 422 && body.contains("dashboards/broken.toml") && body.contains("nothing_here"),
        "{code} {body}"
    );
    let (code, body) = get(&address, "/api/dashboards/broken/writes", None);
    assert!(code == 422 && body.contains("only reads"), "{code} {body}");
    assert!(!lake.path().join("gold/written").exists(), "nothing written");
    // The server is still there.
    assert_eq!(get(&address, "/api/dashboards/broken/fine", None).0, 200);
    server.kill();
}
