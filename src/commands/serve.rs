//! `quickchat-etl serve`: the project's dashboards over the lake, until stopped. A dashboard
//! file that does not parse is reported and left out; the others are served.

use crate::catalog::Lake;
use crate::cli::ServeArgs;
use crate::config::Settings;
use crate::dashboards::server::{DEFAULT_LISTEN, start};
use crate::error::{Error, Result};
use crate::project::Project;
use crate::query::mysql_mirror::MysqlMirror;

/// Serves the dashboards until Ctrl-C or SIGTERM.
pub async fn run(settings: &Settings, args: ServeArgs) -> Result<()> {
    let project = Project::new(settings.project.clone());
    let (dashboards, problems) = crate::dashboards::load(&project)?;
    for problem in &problems {
        tracing::error!(problem = %problem, "dashboard left out (quickchat-etl validate lists every problem)");
    }
    if dashboards.is_empty() {
        return Err(Error::Usage(format!(
            "no dashboard to serve in the {} (dashboards/*.toml)",
            project.describe()
        )));
    }
    let lake = Lake::new(settings.lake.clone());
    let listen = args
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default"));
    let names: Vec<String> = dashboards.iter().map(|d| d.name.clone()).collect();
    let root = lake.root().to_string();
    let mirror = match &settings.mysql_url {
        Some(url) => Some(MysqlMirror::of(&super::load_registry(settings)?, url).await),
        None => None,
    };
    let mirrored: Vec<String> = mirror.iter().flat_map(|m| m.names().map(ToString::to_string)).collect();
    let server = start(listen, dashboards, lake, mirror).await?;
    tracing::info!(lake = %root, dashboards = %names.join(", "), mysql = %mirrored.join(", "), url = %format!("http://{}/", server.address), "serving dashboards");
    eprintln!("dashboards at http://{}/ over {root} (Ctrl-C to stop)", server.address);
    super::run::shutdown_signal().await;
    drop(server);
    Ok(())
}
