//! Any text as a pipeline file, through the loader `run` and `validate` use: it is a job, a
//! streaming pipeline or a list of problems, each naming the file and saying what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickchat_etl::config::Vars;
use quickchat_etl::jobs::load_pipeline_file;
use quickchat_etl::project::{PipelineText, Project, ProjectLocation};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = PipelineText {
        name: "fuzz".to_string(),
        path: "pipelines/fuzz.toml".to_string(),
        text: text.to_string(),
    };
    let project = Project::new(ProjectLocation::BuiltIn);
    if let Err(problems) = load_pipeline_file(&project, &Vars::default(), &file) {
        assert!(!problems.is_empty(), "a failed load without a problem");
        for problem in problems {
            assert!(!problem.message.trim().is_empty(), "a problem without a message");
        }
    }
});
