//! The web pages in a real browser: headless Debian Chromium, driven by the scripts in
//! `web/tests/` through playwright-core (installed by `scripts/vendor-web.sh install`, which
//! `scripts/install-deps.sh test` runs). Screenshots go to `<target>/tmp/screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::live_ui::{get, spawn_run, ui_address};
use crate::support::{describe, repo_root};

/// Where the tests leave their screenshots.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `node web/tests/<script> <args>` and returns the JSON line it prints last.
async fn browse(script: &str, args: Vec<String>) -> Value {
    let path = repo_root().join("web/tests").join(script);
    let output = tokio::task::spawn_blocking(move || Command::new("node").arg(path).args(args).output())
        .await
        .unwrap()
        .expect("node (Node.js) on the PATH");
    assert!(output.status.success(), "{script}: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {stdout:?}: {e}"))
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
