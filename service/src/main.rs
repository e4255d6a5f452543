//! `septa-service`: run the security service, or set up a tenant.

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use septa_service::server::{self, Options};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "septa-service", about = "The Septa security service: claim, attest, update, report")]
struct Cli {
    /// Data directory: the SQLite database lives here (created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A PostgreSQL URL (postgres://user:password@host/db) instead of --data.
    #[arg(long, conflicts_with = "data")]
    database: Option<String>,
    /// Management API and dashboard over plain HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The device protocol over mutual TLS (rustls), e.g. 0.0.0.0:8443.
    #[arg(long)]
    device_listen: Option<SocketAddr>,
    /// Names (DNS or IP) the device port's certificate is for, when the service CA issues it.
    #[arg(long = "tls-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    tls_names: Vec<String>,
    /// The device port's certificate chain (PEM), instead of one from the service CA.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PKCS#8 PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A factory device CA (PEM or DER) whose client certificates the device port accepts
    /// besides the service CA's own; repeat for several.
    #[arg(long = "device-ca")]
    device_cas: Vec<PathBuf>,
    /// Seconds between a device's check-ins (development: a few; production: about a day).
    #[arg(long, default_value_t = septa_service::web::DEFAULT_CHECK_IN_INTERVAL_S)]
    check_in_interval: u32,
    /// Seconds a nonce stays valid.
    #[arg(long, default_value_t = 60)]
    nonce_ttl: i64,
    /// How often deadlines are checked, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    sweep_ms: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a tenant and print its first admin API token (once: keep it).
    CreateTenant { name: String },
    /// Write the service CA certificate (PEM) that devices and the maker's services trust.
    CaCert,
}

fn database_url(cli: &Cli) -> Result<String> {
    match (&cli.data, &cli.database) {
        (Some(dir), None) => {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            Ok(format!("sqlite://{}", dir.join("septa.db").display()))
        }
        (None, Some(url)) => Ok(url.clone()),
        _ => bail!("give --data DIR (SQLite) or --database postgres://..."),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("SEPTA_LOG")).init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("septa-service: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let url = database_url(&cli)?;
    match &cli.command {
        Some(Command::CreateTenant { name }) => {
            if !septa_service::policy::valid_name(name) {
                bail!("{name:?} is not a valid name: 1-64 letters, digits, '-', '_' or '.'");
            }
            let state = server::state(&url, cli.nonce_ttl).await?;
            let token = septa_service::new_token();
            let hash = septa_service::policy::token_hash(&token);
            state.storage.create_tenant(name, &hash, septa_service::web::now()).await?;
            println!("{token}");
            Ok(())
        }
        Some(Command::CaCert) => {
            let state = server::state(&url, cli.nonce_ttl).await?;
            print!("{}", state.ca.certificate_pem());
            Ok(())
        }
        None => {
            server::run(Options {
                database_url: url,
                listen: cli.listen,
                device_listen: cli.device_listen,
                tls_names: cli.tls_names.clone(),
                tls_identity: cli.tls_cert.clone().zip(cli.tls_key.clone()),
                device_cas: cli.device_cas.clone(),
                sweep_interval: Duration::from_millis(cli.sweep_ms.max(10)),
                nonce_ttl_s: cli.nonce_ttl,
                check_in_interval_s: cli.check_in_interval,
            })
            .await
        }
    }
}
