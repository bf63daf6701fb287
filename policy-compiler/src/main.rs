//! `portcullis-compile`: Cedar policies -> decision-table bundle, checks, and decisions
//! from the command line (the same request shape as `cedar authorize`).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use portcullis::decision::{Bundle, Context, EntityUid, OwnedContext, Request, Scratch};
use portcullis_compile::{Options, build, compile, read_dir};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

/// Writes a line to standard output. `println!` panics when the reader has gone away
/// (`decide --requests big.jsonl | head`); this ends the program quietly instead, with
/// the status a shell reports for SIGPIPE, and reports any other write error.
fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{args}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => Err(format!("cannot write to standard output: {e}")),
    }
}

macro_rules! outln {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))?
    };
}

#[derive(Parser)]
#[command(
    name = "portcullis-compile",
    version,
    about = "Compile Cedar policies into a Portcullis decision-table bundle",
    long_about = "A policy directory holds *.cedar policies, schema.cedarschema (Cedar schema \
syntax), entities.json (Cedar entities), tools.toml (the tool registry) and purposes.toml \
(purpose profiles). `build` validates it all with Cedar and writes a bundle the gateway loads \
or receives by `portcullis push`; `decide` answers requests from a bundle like `cedar authorize`."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate and compile a policy directory into a bundle; prints a summary (policies,
    /// actions, entities, version, digest, compile time). Set SOURCE_DATE_EPOCH for a
    /// reproducible bundle.
    Build {
        /// Policy directory (*.cedar, schema.cedarschema, entities.json, tools.toml,
        /// purposes.toml).
        dir: PathBuf,
        /// Output bundle file.
        #[arg(short, long)]
        out: PathBuf,
        /// Bundle version (default: compile time and source digest).
        #[arg(long)]
        bundle_version: Option<String>,
    },
    /// Validate a policy directory without writing anything; errors name the file, line and
    /// policy.
    Check {
        /// Policy directory.
        dir: PathBuf,
    },
    /// Decide requests against a bundle, as `cedar authorize` would: prints `ALLOW` or
    /// `DENY`, then the determining policy ids (comma-separated), then `(errors: ...)` for
    /// policies skipped because their condition errored.
    Decide {
        /// Bundle file written by `build`.
        #[arg(long)]
        bundle: PathBuf,
        /// Principal, in Cedar syntax: User::"user_7f3a91".
        #[arg(long, required_unless_present = "requests")]
        principal: Option<String>,
        /// Action, in Cedar syntax: Action::"contracts.read".
        #[arg(long, required_unless_present = "requests")]
        action: Option<String>,
        /// Resource, in Cedar syntax: Contract::"contract_7781".
        #[arg(long, required_unless_present = "requests")]
        resource: Option<String>,
        /// Context file: a JSON object in Cedar's JSON value format.
        #[arg(long)]
        context: Option<PathBuf>,
        /// JSON lines {"principal","action","resource","context"} (each line what `cedar
        /// authorize --request-json` reads); one decision per line, in order.
        #[arg(long, conflicts_with_all = ["principal", "action", "resource", "context"])]
        requests: Option<PathBuf>,
    },
}

/// Parses an entity reference exactly as `cedar authorize` does (`Type::"id"`, types
/// possibly namespaced, the id in Cedar's normalised string syntax), with Cedar's parser.
fn parse_uid(s: &str) -> Result<(String, String), String> {
    let uid = cedar_policy::EntityUid::from_str(s)
        .map_err(|e| format!("`{s}` is not an entity reference like User::\"alice\" ({e})"))?;
    Ok((uid.type_name().to_string(), uid.id().unescaped().to_owned()))
}

/// `SOURCE_DATE_EPOCH` (Unix seconds), the reproducible-builds convention for "the time
/// this was built": set, it makes `build` deterministic.
fn source_date_epoch() -> Result<Option<i64>, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            format!("SOURCE_DATE_EPOCH is `{v}`; expected Unix seconds, e.g. 1795497225")
        }),
    }
}

fn decide_one(
    b: &Bundle,
    scratch: &mut Scratch,
    p: &str,
    a: &str,
    r: &str,
    ctx: &OwnedContext,
) -> Result<String, String> {
    let (pt, pi) = parse_uid(p)?;
    let (at, ai) = parse_uid(a)?;
    let (rt, ri) = parse_uid(r)?;
    let view = ctx.view();
    let context = Context::new(&view);
    let req = Request {
        principal: EntityUid { ty: &pt, id: &pi },
        action: EntityUid { ty: &at, id: &ai },
        resource: EntityUid { ty: &rt, id: &ri },
        context: &context,
    };
    let d = b.decide(&req, scratch);
    let mut ids: Vec<&str> = scratch
        .determining()
        .iter()
        .map(|p| b.policy_id(*p))
        .collect();
    ids.sort_unstable();
    let mut errs: Vec<&str> = scratch.errored().iter().map(|p| b.policy_id(*p)).collect();
    errs.sort_unstable();
    let mut line = String::from(if d.allow { "ALLOW" } else { "DENY" });
    if !ids.is_empty() {
        line.push(' ');
        line.push_str(&ids.join(","));
    }
    if !errs.is_empty() {
        line.push_str(&format!(" (errors: {})", errs.join(",")));
    }
    Ok(line)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Build {
            dir,
            out,
            bundle_version,
        } => {
            let start = Instant::now();
            let (bytes, compiled) = build(
                &dir,
                &Options {
                    validate: true,
                    version: bundle_version,
                    compiled_at: source_date_epoch()?,
                },
            )
            .map_err(|e| e.to_string())?;
            let elapsed = start.elapsed();
            std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            let b = Bundle::from_bytes(&bytes)
                .map_err(|e| format!("self-check of the written bundle failed: {e}"))?;
            let m = b.meta();
            for w in &compiled.warnings {
                eprintln!("warning: {w}");
            }
            outln!("bundle    {} ({} bytes)", out.display(), bytes.len());
            outln!("version   {}", m.version);
            outln!("digest    sha256:{}", m.digest_hex);
            outln!(
                "compiler  portcullis-compile {} (format {}.{})",
                m.compiler_version,
                m.format.0,
                m.format.1
            );
            outln!("policies  {}", m.counts.policies);
            outln!("actions   {}", m.counts.actions);
            outln!("entities  {}", m.counts.entities);
            outln!(
                "tools     {}  purposes {}",
                m.counts.tools,
                m.counts.purposes
            );
            outln!("compiled  in {:.1} ms", elapsed.as_secs_f64() * 1e3);
            Ok(())
        }
        Cmd::Check { dir } => {
            let sources = read_dir(&dir).map_err(|e| e.to_string())?;
            let c = compile(&sources, &Options::default()).map_err(|e| e.to_string())?;
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            outln!(
                "ok: {} policies, {} tools, {} purposes",
                c.data.policies.len(),
                c.data.tools.len(),
                c.data.purposes.len()
            );
            Ok(())
        }
        Cmd::Decide {
            bundle,
            principal,
            action,
            resource,
            context,
            requests,
        } => {
            let bytes = std::fs::read(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
            let b = Bundle::from_bytes(&bytes).map_err(|e| format!("{}: {e}", bundle.display()))?;
            let mut scratch = Scratch::default();
            scratch.collect_all_errors = true;
            if let Some(file) = requests {
                let f =
                    std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                    let line = line.map_err(|e| format!("{}: {e}", file.display()))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let at = |m: String| format!("{}:{}: {m}", file.display(), i + 1);
                    let v: serde_json::Value =
                        serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
                    let field = |k: &str| {
                        v.get(k)
                            .and_then(|x| x.as_str())
                            .ok_or_else(|| at(format!("`{k}` must be a string like Type::\"id\"")))
                    };
                    let ctx = match v.get("context") {
                        None => OwnedContext::default(),
                        Some(c) => OwnedContext::from_json(c).map_err(at)?,
                    };
                    outln!(
                        "{}",
                        decide_one(
                            &b,
                            &mut scratch,
                            field("principal")?,
                            field("action")?,
                            field("resource")?,
                            &ctx
                        )
                        .map_err(at)?
                    );
                }
                return Ok(());
            }
            let ctx = match context {
                None => OwnedContext::default(),
                Some(f) => {
                    let text =
                        std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                    let v: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
                    OwnedContext::from_json(&v).map_err(|e| format!("{}: {e}", f.display()))?
                }
            };
            let (p, a, r) = (
                principal.unwrap_or_default(),
                action.unwrap_or_default(),
                resource.unwrap_or_default(),
            );
            outln!("{}", decide_one(&b, &mut scratch, &p, &a, &r, &ctx)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-compile: {e}");
            ExitCode::FAILURE
        }
    }
}
