//! `quickchat-etl checkpoints <pipeline>`: what a streaming pipeline's checkpoints hold, per
//! input (`kafka`, `files`, `generator`); `--cleanup --keep N` removes old snapshots and the
//! logs only they needed; `--reset` deletes them so the next run starts over.

use crate::catalog::Lake;
use crate::cli::CheckpointsArgs;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::stream::checkpoint::Checkpoints;

/// The inputs a pipeline keeps separate checkpoints for.
const INPUTS: [&str; 3] = ["kafka", "files", "generator"];

/// Shows, cleans up or resets the checkpoints.
pub async fn run(settings: &Settings, args: CheckpointsArgs) -> Result<()> {
    let registry = super::load_registry(settings)?;
    let pipeline = registry.stream(&args.pipeline).ok_or_else(|| {
        let known: Vec<&str> = registry.streams().map(|s| s.name.as_str()).collect();
        Error::Usage(format!(
            "no streaming pipeline `{}` (known: {})",
            args.pipeline,
            known.join(", ")
        ))
    })?;
    let lake = Lake::new(settings.lake.clone());
    let mut found = false;
    for input in INPUTS {
        let checkpoints = Checkpoints::new(&lake, &pipeline.name, input)?;
        let (snapshots, last_commit, commits) = checkpoints.summary().await?;
        if snapshots.is_empty() && last_commit.is_none() {
            continue;
        }
        found = true;
        if args.reset {
            let removed = checkpoints.remove_all().await?;
            println!(
                "{input:<10} reset: removed {removed} files from {}",
                checkpoints.location()
            );
            continue;
        }
        if args.cleanup {
            let removed = checkpoints.cleanup(args.keep).await?;
            println!(
                "{input:<10} removed {removed} files, kept the {} latest snapshots",
                args.keep
            );
        }
        let (snapshots, last_commit, commits) = if args.cleanup {
            checkpoints.summary().await?
        } else {
            (snapshots, last_commit, commits)
        };
        println!(
            "{input:<10} {}: last committed epoch {}, {commits} commit logs, snapshots at epochs {}",
            checkpoints.location(),
            last_commit.map_or("-".to_string(), |e| e.to_string()),
            snapshots.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    if !found {
        println!("{} has no checkpoints in {}", pipeline.name, lake.root());
    }
    Ok(())
}
