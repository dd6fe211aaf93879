//! `quickchat-etl run <streaming pipeline>`: micro-batches from Kafka (until Ctrl-C/SIGTERM, or
//! `--until-caught-up`), from files (`--from-files DIR`) or from the generator
//! (`--from-generator`), then a summary of what was read and written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalog::Lake;
use crate::cli::RunArgs;
use crate::config::Settings;
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, ExitCode, Result};
use crate::metrics::{Ended, RunReport};
use crate::observe::server;
use crate::observe::telemetry::Telemetry;
use crate::sources::Input;
use crate::sources::files::FileInput;
use crate::sources::generator::GeneratorInput;
use crate::sources::kafka::KafkaInput;
use crate::stream::engine::{Engine, RunOptions, SinkSettings};

/// Runs a streaming pipeline as the flags say.
pub async fn run(settings: &Settings, pipeline: &StreamPipeline, args: RunArgs) -> Result<()> {
    if args.date.is_some() || args.from.is_some() || args.upstream || args.dry_run {
        return Err(Error::Usage(format!(
            "`{}` is a streaming pipeline: --date, --from/--to, --upstream and --dry-run are for batch jobs",
            pipeline.name
        )));
    }
    let lake = Lake::new(settings.lake.clone());
    let stream = args.stream;
    let brokers = settings.brokers_for(pipeline);
    let input = if let Some(dir) = &stream.from_files {
        // Like any path on a command line, a relative folder is the working directory's.
        let dir = crate::config::location_url(dir)?;
        Input::Files(FileInput::open(pipeline, &lake, dir.as_str()).await?)
    } else if stream.from_generator {
        let start_ms = chrono::Utc::now().timestamp_millis();
        Input::Generator(GeneratorInput::new(
            pipeline,
            stream.rate,
            stream.duration,
            start_ms,
            stream.seed,
        )?)
    } else {
        let brokers = brokers.clone().ok_or_else(|| {
            Error::config(format!(
                "`{}` reads Kafka but no brokers are set: set KAFKA_BOOTSTRAP_SERVERS or pass --brokers \
                 (or run it with --from-files DIR or --from-generator, which need no broker)",
                pipeline.name
            ))
        })?;
        let kafka = tokio::task::block_in_place(|| KafkaInput::connect(pipeline, &brokers))?;
        Input::Kafka(Box::new(kafka))
    };
    let kind = input.kind();

    let stop = Arc::new(AtomicBool::new(false));
    let signal_stop = stop.clone();
    let pipeline_name = pipeline.name.clone();
    tokio::spawn(async move {
        super::run::shutdown_signal().await;
        tracing::warn!(pipeline = %pipeline_name, "stopping after the micro-batch in progress commits (again to abort)");
        signal_stop.store(true, Ordering::SeqCst);
        super::run::shutdown_signal().await;
        eprintln!("aborted: the micro-batch in progress was not committed; it is processed again on restart");
        std::process::exit(ExitCode::Interrupted.code().into());
    });

    let sink_settings = SinkSettings {
        mysql_url: settings.mysql_url.clone(),
        brokers,
        elasticsearch: settings.elasticsearch.clone(),
        mongodb: settings.mongodb.clone(),
    };
    let mut engine = Engine::open(pipeline, &lake, input, sink_settings).await?;
    tracing::info!(pipeline = %pipeline.name, input = kind, lake = %lake.root(),
        checkpoint = %engine.checkpoint_location(), "streaming");
    let outputs = pipeline.outputs.iter().map(|o| o.name.clone()).collect();
    let telemetry = Arc::new(Telemetry::new().watching(&pipeline.name, outputs, pipeline.interval));
    // Kept until the run ends: dropping the server stops it.
    let ui = super::run::start_ui(&stream, settings, &pipeline.name, |listen| {
        server::start(listen, telemetry.clone())
    })
    .await?;
    if ui.is_some() {
        engine.observed_by(telemetry);
    }
    let options = RunOptions {
        until_caught_up: stream.until_caught_up,
        stop,
        without_sinks: false,
        max_epochs: stream.max_epochs,
    };
    let report = engine.run(&options).await?;
    print_summary(pipeline, kind, &report, engine.checkpoint_location());
    Ok(())
}

fn print_summary(pipeline: &StreamPipeline, input: &str, report: &RunReport, checkpoint: &str) {
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    let ended = match report.ended {
        Ended::EndOfInput => "input consumed, every window closed",
        Ended::CaughtUp => "caught up",
        Ended::Stopped => "stopped",
        Ended::EpochLimit => "micro-batch limit reached",
    };
    println!(
        "{} from {input}: {} epoch(s){}, {} records in {:.2}s ({:.0} records/s); {ended}",
        pipeline.name,
        report.epochs,
        if report.replayed > 0 {
            format!(" ({} replayed after a restart)", report.replayed)
        } else {
            String::new()
        },
        report.records,
        seconds,
        report.records as f64 / seconds,
    );
    println!(
        "late {}, duplicates {}, quarantined {}; state {} rows",
        report.late, report.duplicates, report.rejected, report.state_rows
    );
    println!("{:<64} {:>10}", "output -> sink", "rows");
    for (target, rows) in &report.written {
        println!("{target:<64} {rows:>10}");
    }
    println!("checkpoint {checkpoint} at epoch {}", report.last_epoch);
}
