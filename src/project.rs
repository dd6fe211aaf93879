//! Where pipeline files and SQL files come from: a project folder on disk, or the copy of this
//! repository's `pipelines/` and `sql/` built into the binary, so an installed binary (or the
//! Docker image) runs the QuickChat pipeline from any working directory.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::error::{Error, Result};

static BUILT_IN_PIPELINES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/pipelines");
static BUILT_IN_SQL: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/sql");
static BUILT_IN_PROTO: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/proto");
static BUILT_IN_DASHBOARDS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/dashboards");

/// Where pipeline files and SQL files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectLocation {
    /// A folder with `pipelines/` and `sql/`.
    Folder(PathBuf),
    /// The copy built into the binary (used by an installed binary run anywhere).
    BuiltIn,
}

/// A pipeline or dashboard file's text with the name and path it was found under.
#[derive(Debug, Clone)]
pub struct PipelineText {
    /// The job's or dashboard's name: the file name without `.toml`.
    pub name: String,
    /// The path shown in messages, e.g. `pipelines/silver-messages.toml`.
    pub path: String,
    /// The file's contents.
    pub text: String,
}

/// Read access to the project's files.
#[derive(Debug, Clone)]
pub struct Project {
    location: ProjectLocation,
}

impl Project {
    /// A project at the given location.
    pub fn new(location: ProjectLocation) -> Self {
        Self { location }
    }

    /// Where the files come from, for messages.
    pub fn describe(&self) -> String {
        match &self.location {
            ProjectLocation::Folder(dir) => format!("project folder {}", dir.display()),
            ProjectLocation::BuiltIn => "pipelines built into the binary".to_string(),
        }
    }

    /// Every `pipelines/*.toml` file, sorted by job name.
    pub fn pipeline_files(&self) -> Result<Vec<PipelineText>> {
        self.toml_files("pipelines", &BUILT_IN_PIPELINES, true)
    }

    /// Every `dashboards/*.toml` file, sorted by name (none when the folder has no
    /// `dashboards/`).
    pub fn dashboard_files(&self) -> Result<Vec<PipelineText>> {
        self.toml_files("dashboards", &BUILT_IN_DASHBOARDS, false)
    }

    fn toml_files(&self, folder_name: &str, built_in: &Dir<'static>, required: bool) -> Result<Vec<PipelineText>> {
        let mut files = match &self.location {
            ProjectLocation::Folder(dir) => {
                let folder = dir.join(folder_name);
                if !required && !folder.exists() {
                    return Ok(Vec::new());
                }
                let entries = std::fs::read_dir(&folder).map_err(|e| Error::io(folder.display(), e))?;
                let mut files = Vec::new();
                for entry in entries {
                    let path = entry.map_err(|e| Error::io(folder.display(), e))?.path();
                    if path.extension().is_some_and(|ext| ext == "toml") {
                        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
                        files.push(pipeline_text(&path, display_path(dir, &path), text));
                    }
                }
                files
            }
            ProjectLocation::BuiltIn => built_in
                .files()
                .filter(|f| f.path().extension().is_some_and(|ext| ext == "toml"))
                .map(|f| {
                    let shown = format!("{folder_name}/{}", f.path().display());
                    pipeline_text(f.path(), shown, f.contents_utf8().unwrap_or_default().to_string())
                })
                .collect(),
        };
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// Reads a binary file named relative to the project folder (a Protobuf descriptor set).
    pub fn read_bytes(&self, relative: &str) -> Result<Vec<u8>> {
        match &self.location {
            ProjectLocation::Folder(dir) => {
                let path = dir.join(relative);
                std::fs::read(&path).map_err(|e| Error::io(path.display(), e))
            }
            ProjectLocation::BuiltIn => BUILT_IN_PROTO
                .get_file(relative.strip_prefix("proto/").unwrap_or(relative))
                .map(|f| f.contents().to_vec())
                .ok_or_else(|| {
                    Error::io(
                        relative,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "not built into the binary"),
                    )
                }),
        }
    }

    /// Reads a file named relative to the project folder, such as `sql/silver/messages.sql`.
    pub fn read(&self, relative: &str) -> Result<String> {
        match &self.location {
            ProjectLocation::Folder(dir) => {
                let path = dir.join(relative);
                std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))
            }
            ProjectLocation::BuiltIn => relative
                .strip_prefix("sql/")
                .and_then(|inner| BUILT_IN_SQL.get_file(inner))
                .and_then(|f| f.contents_utf8())
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::io(
                        relative,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "not built into the binary"),
                    )
                }),
        }
    }
}

fn pipeline_text(path: &Path, shown: String, text: String) -> PipelineText {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    PipelineText {
        name,
        path: shown,
        text,
    }
}

fn display_path(root: &Path, path: &Path) -> String {
    let relative: PathBuf = path
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf());
    relative.display().to_string()
}
