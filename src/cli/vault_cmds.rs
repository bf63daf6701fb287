//! `portcullis vault init|put|list|rm`: manage the encrypted credential vault. Secret
//! values are read from standard input (never from the command line, where they would
//! land in shell history and the process table) and never printed.

use super::CliError;
use clap::{Args, Subcommand};
use portcullis::vault::{DEFAULT_KEY_ENV, MasterKey, Secret, Vault, VaultError};
use std::io::Read;
use std::path::PathBuf;

#[derive(Args)]
pub struct VaultArgs {
    /// Vault file.
    #[arg(long, default_value = "vault.json")]
    pub vault: PathBuf,
    /// Master key file (base64 or hex of 32 bytes). Without it, the key comes from the
    /// environment variable named by --key-env.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the master key.
    #[arg(long, default_value = DEFAULT_KEY_ENV)]
    pub key_env: String,
    #[command(subcommand)]
    pub cmd: VaultCmd,
}

#[derive(Subcommand)]
pub enum VaultCmd {
    /// Create an empty vault. With --key-file and no existing key file, a new master key
    /// is generated into it (mode 0600).
    Init {
        /// Overwrite an existing vault file.
        #[arg(long)]
        force: bool,
    },
    /// Store a credential; the value is read from standard input (trailing newline trimmed).
    Put { name: String },
    /// List credential names (never values).
    List,
    /// Remove a credential.
    Rm { name: String },
}

fn verr(e: VaultError) -> CliError {
    CliError::Usage(e.to_string())
}

fn key(a: &VaultArgs) -> Result<MasterKey, CliError> {
    match &a.key_file {
        Some(f) => MasterKey::from_file(f).map_err(verr),
        None => MasterKey::from_env(&a.key_env).map_err(verr),
    }
}

pub fn run(a: VaultArgs) -> Result<(), CliError> {
    match &a.cmd {
        VaultCmd::Init { force } => {
            if a.vault.exists() && !force {
                return Err(CliError::Usage(format!(
                    "{} already exists; pass --force to replace it (its secrets are lost)",
                    a.vault.display()
                )));
            }
            let k = match &a.key_file {
                Some(f) if !f.exists() => {
                    let k = MasterKey::generate().map_err(verr)?;
                    portcullis::vault::write_private_atomically(
                        f,
                        format!("{}\n", k.to_base64()).as_bytes(),
                    )
                    .map_err(|e| CliError::io(f, e))?;
                    outln!(
                        "master key written to {} (mode 0600); keep it apart from the vault",
                        f.display()
                    )?;
                    k
                }
                _ => key(&a)?,
            };
            Vault::new().save(&a.vault, &k).map_err(verr)?;
            outln!("empty vault created at {}", a.vault.display())?;
            Ok(())
        }
        VaultCmd::Put { name } => {
            let k = key(&a)?;
            let mut v = Vault::open(&a.vault, &k).map_err(verr)?;
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| CliError::io("<stdin>", e))?;
            let value = value.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(CliError::Usage("no secret on standard input".into()));
            }
            v.insert(name, Secret::new(value.as_bytes().to_vec()))
                .map_err(verr)?;
            v.save(&a.vault, &k).map_err(verr)?;
            outln!("stored `{name}` ({} credentials in the vault)", v.len())?;
            Ok(())
        }
        VaultCmd::List => {
            let v = Vault::open(&a.vault, &key(&a)?).map_err(verr)?;
            for n in v.names() {
                outln!("{n}")?;
            }
            Ok(())
        }
        VaultCmd::Rm { name } => {
            let k = key(&a)?;
            let mut v = Vault::open(&a.vault, &k).map_err(verr)?;
            v.remove(name).map_err(verr)?;
            v.save(&a.vault, &k).map_err(verr)?;
            outln!("removed `{name}`")?;
            Ok(())
        }
    }
}
