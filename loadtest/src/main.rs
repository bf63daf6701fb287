//! `portcullis-loadtest`: open-loop load generator (issue #5 builds it).

fn main() -> std::process::ExitCode {
    eprintln!("portcullis-loadtest: the load generator is not built yet (tracked in issue #5)");
    std::process::ExitCode::FAILURE
}
