//! `portcullis-compile`: Cedar policies -> decision-table bundle (issue #3 builds it).

fn main() -> std::process::ExitCode {
    eprintln!("portcullis-compile: the policy compiler is not built yet (tracked in issue #3)");
    std::process::ExitCode::FAILURE
}
