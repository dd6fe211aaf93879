//! Golden streaming runs: every streaming pipeline over generated event files (fixed seed,
//! five minutes of event time, so windows, sessions and the join's buffer span many
//! micro-batches) gives the checked-in tables under `tests/golden/streaming/<pipeline>/`, and
//! the same run stopped after every micro-batch and restored from its checkpoint gives the same
//! tables. Regenerate with `UPDATE_GOLDEN=1 scripts/test.sh streaming_golden` after an intended
//! change, and review the diff.

use quickchat_etl::config::stream_pipeline::StreamPipeline;
use quickchat_etl::generate::streams::stream_files;
use quickchat_etl::metrics::{Ended, RunReport};
use quickchat_etl::sources::Input;
use quickchat_etl::sources::files::FileInput;
use quickchat_etl::stream::engine::{Engine, RunOptions, SinkSettings};

use crate::stream_support::{StreamProject, assert_same, stream_tables, write_files};
use crate::support::{TestLake, assert_golden_in};

/// One run of the pipeline over the files in `dir`, from the lake's checkpoint on.
async fn run(pipeline: &StreamPipeline, lake: &TestLake, dir: &str, options: &RunOptions) -> RunReport {
    let input = Input::Files(FileInput::open(pipeline, &lake.lake, dir).await.unwrap());
    let mut engine = Engine::open(pipeline, &lake.lake, input, SinkSettings::default())
        .await
        .unwrap();
    engine.run(options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_pipelines_give_their_golden_tables_through_a_restore_at_every_epoch() {
    for (name, events) in [
        ("clickstream-analytics", 1_500),
        ("chat-analytics", 900),
        ("interaction-analytics", 900),
    ] {
        let project = StreamProject::new(150).await;
        // A snapshot after every epoch: each restart resumes from the state, not a replay.
        project.set_setting("snapshot_interval", "\"0s\"");
        let pipeline = project.pipeline(name);
        let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
        let files = stream_files(&pipeline, events, 5.0, start.timestamp_millis(), 13)
            .unwrap()
            .into_iter()
            .map(|f| (f.topic, f.contents))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &files);
        let dir = dir.path().to_str().unwrap().to_string();

        let whole = TestLake::local();
        let report = run(&pipeline, &whole, &dir, &RunOptions::default()).await;
        assert!(report.epochs >= 6, "{name}: {report:?}");
        let expected = stream_tables(&whole).await;
        assert_golden_in(&format!("tests/golden/streaming/{name}"), &expected);

        let stepped = TestLake::local();
        let one_epoch = RunOptions {
            max_epochs: Some(1),
            ..Default::default()
        };
        let mut restarts = 0;
        loop {
            let report = run(&pipeline, &stepped, &dir, &one_epoch).await;
            restarts += 1;
            assert!(restarts <= 100, "{name}: the input never ended");
            if report.ended == Ended::EndOfInput {
                break;
            }
            assert_eq!((report.epochs, report.ended), (1, Ended::EpochLimit), "{name}");
        }
        assert!(restarts >= 6, "{name}: {restarts} runs");
        assert_same(
            &expected,
            &stream_tables(&stepped).await,
            &format!("{name} restored at every epoch"),
        );
        project.drop_database().await;
    }
}
