//! Any text as a dashboard file, through the parser `serve` and `validate` use: it is a
//! dashboard or a list of problems, each naming the file and saying what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickchat_etl::dashboards::file::Dashboard;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(problems) = Dashboard::parse("fuzz", "dashboards/fuzz.toml", text) {
        assert!(!problems.is_empty(), "a failed parse without a problem");
        for problem in problems {
            assert!(!problem.message.trim().is_empty(), "a problem without a message");
            assert_eq!(problem.file.as_deref(), Some("dashboards/fuzz.toml"), "a problem naming no file");
        }
    }
});
