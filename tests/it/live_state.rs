//! A running pipeline's state as tables: `/api/state` and `sql --attach`. The open windows and
//! sessions a pipeline holds once it has read everything are exactly the rows those windows and
//! sessions close into when a later event moves the watermark past them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::live_ui::{get, scrape_until_above, ui_address};
use crate::outage_support::Running;
use crate::stream_support::{StreamProject, input_files_at_rate, produce_files, sentinels};
use crate::support::{TestLake, describe};

const PIPELINE: &str = "clickstream-analytics";

const PAGE_VIEWS: &str = "window_start, window_end, product_id, category, view_count, unique_users";
const SESSIONS: &str = "user_id, session_start, session_end, event_count, duration_seconds";

/// The rows of a query's CSV answer (its header left out), as a set.
fn rows(csv: &str) -> BTreeSet<String> {
    csv.lines().skip(1).map(str::to_string).collect()
}

/// The value `serve` answers for a KPI chart of `sql`, from a dashboard file added to the
/// project.
async fn served_kpi(project: &StreamProject, lake: &TestLake, sql: &str) -> f64 {
    let file = format!(
        "title = \"Mirror\"\n[[chart]]\nname = \"kpi\"\ntitle = \"KPI\"\nkind = \"kpi\"\nsql = {sql:?}\nvalue = \"views\"\n"
    );
    std::fs::write(project.path().join("dashboards/mirror.toml"), file).unwrap();
    let mut serve = Running::spawn(project.command(lake, &["serve", "--listen", "127.0.0.1:0"]));
    let line = serve
        .wait_for_line("the dashboards' address", |l| l.contains("dashboards at http://"))
        .await;
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let (code, body) = get(address, "/api/dashboards/mirror/kpi", None);
    serve.kill();
    assert_eq!(code, 200, "{body}");
    let answer = json(&body);
    answer["rows"][0][0].as_f64().unwrap_or_else(|| panic!("{answer}"))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipelines_open_windows_and_sessions_are_tables_holding_the_rows_they_close_into() {
    let project = StreamProject::new(2_000).await;
    let pipeline = project.pipeline(PIPELINE);
    // One partition per topic: the watermark follows the events read, however the producer
    // spread them (with several, one partition holding only early events holds it back).
    project.create_topics_with(&pipeline, 1).await;
    // Eight minutes of event time: the first windows close (watermark 5 minutes), the later
    // ones and every 30-minute session stay open.
    let produced = produce_files(&pipeline, &input_files_at_rate(&pipeline, 12_000, 25.0, 5)).await;
    let lake = TestLake::local();
    let mut command = project.command(&lake, &["run", PIPELINE, "--ui", "127.0.0.1:0"]);
    command.env("QUICKCHAT_LOG", "info");
    let mut run = Running::spawn(command);
    let address = ui_address(&mut run).await;
    scrape_until_above(&address, "quickchat_records_read_total", produced as f64 - 1.0).await;

    // Every stateful output and join buffer, with its operator; stateless outputs have none.
    let (status, body) = get(&address, "/api/state", None);
    assert_eq!(status, 200, "{body}");
    let listed = json(&body);
    let tables: Vec<(&str, &str)> = listed["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["operator"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tables,
        [
            ("page_views", "windowed aggregate"),
            ("revenue", "windowed aggregate"),
            ("conversions", "windowed aggregate"),
            ("sessions", "session aggregate"),
            ("transactions_join_buffer", "join buffer"),
        ],
        "{body}"
    );
    assert!(listed["tables"][0]["state_rows"].as_u64().unwrap() > 0, "{body}");
    let (status, body) = get(&address, "/api/state/page_views?limit=3", None);
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    assert_eq!(page["rows"].as_array().unwrap().len(), 3, "{body}");
    assert!(
        page["total_rows"].as_u64().unwrap() > 3 && page["truncated"] == true,
        "{body}"
    );
    assert_eq!(page["columns"][4], "view_count", "{body}");
    let (status, body) = get(&address, "/api/state/bronze_clickstream", None);
    assert_eq!(status, 404, "a stateless output holds nothing: {body}");

    // The open windows and sessions, through the REPL, next to the lake's tables.
    let url = format!("http://{address}");
    let attached = |sql: &str| project.run_ok(&lake, &["sql", "--attach", &url, "--format", "csv", "-e", sql]);
    let in_lake = |sql: &str| project.run_ok(&lake, &["sql", "--format", "csv", "-e", sql]);
    let open_views = rows(&attached(&format!("SELECT {PAGE_VIEWS} FROM live.page_views")));
    let open_sessions = rows(&attached(&format!("SELECT {SESSIONS} FROM live.sessions")));
    let closed_before = rows(&in_lake(&format!("SELECT {PAGE_VIEWS} FROM gold.page_views")));
    assert!(!closed_before.is_empty(), "the first windows closed while reading");
    assert!(open_views.len() > 10 && !open_sessions.is_empty());
    assert!(
        open_views.is_disjoint(&closed_before),
        "a window is open or closed, not both"
    );
    let buffered = attached("SELECT count(DISTINCT transaction_id) AS n FROM live.transactions_join_buffer");
    let buffered: u64 = buffered.lines().nth(1).and_then(|n| n.parse().ok()).expect(&buffered);
    assert!(buffered > 0, "transactions wait in the join buffer for later clicks");

    // The MySQL mirror (update mode) holds every window: the closed ones, and the open ones'
    // current values; `sql` and `serve` read it as mysql.page_views.
    let mirrored = rows(&in_lake(&format!("SELECT {PAGE_VIEWS} FROM mysql.page_views")));
    let every_window: BTreeSet<String> = open_views.union(&closed_before).cloned().collect();
    assert_eq!(mirrored, every_window);
    let views_in_mirror: u64 = mirrored
        .iter()
        .map(|row| row.split(',').nth(4).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        served_kpi(&project, &lake, "SELECT sum(view_count) AS views FROM mysql.page_views").await,
        views_in_mirror as f64
    );

    // A later event closes every window and session: into the rows the state showed.
    let sentinel_events = produce_files(&pipeline, &sentinels(&pipeline)).await;
    scrape_until_above(
        &address,
        "quickchat_records_read_total",
        (produced + sentinel_events) as f64 - 1.0,
    )
    .await;
    let real = |row: &String| !row.contains("sentinel");
    let closed_views: BTreeSet<String> = rows(&in_lake(&format!("SELECT {PAGE_VIEWS} FROM gold.page_views")))
        .difference(&closed_before)
        .filter(|row| real(row))
        .cloned()
        .collect();
    assert_eq!(open_views, closed_views);
    let closed_sessions: BTreeSet<String> = rows(&in_lake(&format!("SELECT {SESSIONS} FROM gold.sessions")))
        .into_iter()
        .filter(real)
        .collect();
    assert_eq!(open_sessions, closed_sessions);

    // Once the run is gone, attaching says where it looked.
    run.kill();
    let output = project.run(&lake, &["sql", "--attach", &url, "-e", "SELECT 1"]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&address),
        "{}",
        describe(&output)
    );
    project.drop_database().await;
}
