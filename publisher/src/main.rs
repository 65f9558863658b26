//! `grove`: publish static sites to a grove host.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage, 3 a publish conflict that
//! rebasing could not resolve.

mod client;
mod nodes;
mod progress;
mod publish;
mod settings;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use grove_core::SiteName;
use grove_core::publish_api::{GrantRequest, PurgeState, SitemapSummary};
use grove_core::token::Right;
use grove_core::tree::Difference;
use grove_core::version::VersionKind;

use crate::client::Client;
use crate::progress::Progress;
use crate::publish::{ConflictUnresolved, LocalBuild};
use crate::settings::Settings;

/// Publish static sites to a grove host: only what the host lacks is uploaded,
/// and the site switches to the new version atomically.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Host and token come from GROVE_HOST and GROVE_TOKEN, else from `grove login`.\n\
                  Exit codes: 0 ok, 1 failure, 2 usage, 3 publish conflict not resolved,\n\
                  4 published but the CDN purge failed (--wait-purge)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish DIR as the next version of a site.
    Publish {
        dir: PathBuf,
        #[command(flatten)]
        site: SiteArg,
        /// Describes the version in `grove versions`.
        #[arg(long, short, default_value = "")]
        message: String,
        /// Print what would change; upload nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object on stdout and no progress.
        #[arg(long)]
        json: bool,
        /// After publishing, wait until the CDN has purged what changed.
        #[arg(long)]
        wait_purge: bool,
    },
    /// What publishing DIR would change.
    Diff {
        #[command(flatten)]
        site: SiteArg,
        dir: PathBuf,
        /// Print one JSON object: {"added", "changed", "removed"}.
        #[arg(long)]
        json: bool,
    },
    /// A site's versions, newest first.
    Versions {
        #[command(flatten)]
        site: SiteArg,
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier (or later) version live again, as a new version.
    Rollback {
        #[command(flatten)]
        site: SiteArg,
        /// Version to restore; default: the one before the live one.
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Grant and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Save the host and a token for later commands (file mode 0600).
    Login {
        /// e.g. http://127.0.0.1:8080
        #[arg(long)]
        host: String,
        /// Default: read one line from standard input.
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, Args)]
struct SiteArg {
    /// Site name.
    #[arg(long, value_parser = parse_site)]
    site: SiteName,
}

fn parse_site(text: &str) -> Result<SiteName, String> {
    SiteName::parse(text).map_err(|error| error.to_string())
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Grant a token limited to a path (a site is `sites/<name>`).
    Grant {
        #[arg(long)]
        path: String,
        /// Comma-separated: read, write, grant.
        #[arg(long, value_delimiter = ',', value_parser = parse_right, required = true)]
        rights: Vec<Right>,
        /// Lifetime, e.g. 90d, 12h, 30m.
        #[arg(long, value_parser = humantime::parse_duration)]
        until: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (and every token granted through it).
    Revoke {
        handle: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_right(text: &str) -> Result<Right, String> {
    match text.trim() {
        "read" => Ok(Right::Read),
        "write" => Ok(Right::Write),
        "grant" => Ok(Right::Grant),
        other => Err(format!("unknown right {other:?}: use read, write or grant")),
    }
}

/// The error and its causes, each said once: a cause whose text the message
/// so far already holds (many errors quote their source) is left out.
fn message_of(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", message_of(&error));
            if error.downcast_ref::<ConflictUnresolved>().is_some() {
                ExitCode::from(3)
            } else if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else if error.downcast_ref::<PurgeFailed>().is_some() {
                ExitCode::from(4)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    if let Command::Login { host, token } = command {
        return login(host, token);
    }
    let settings = Settings::load()?;
    let (host, token) = settings.require().map_err(UsageError)?;
    let client = Client::new(host, token)?;
    match command {
        Command::Publish {
            dir,
            site,
            message,
            dry_run,
            json,
            wait_purge,
        } => {
            let site = site.site;
            let progress = Progress::new(json);
            let build = LocalBuild::of(&dir, &site, &client, &progress).await?;
            if dry_run {
                let changes = build.diff(live_tree(&client, &site).await?).await?;
                print_changes(&changes, json);
                return Ok(());
            }
            let mut summary = publish::publish(&client, &site, &build, &message, &progress).await?;
            if wait_purge {
                summary.purge = wait_for_purge(&client, &site, summary.version, summary.purge, &progress).await?;
            }
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "published {} version {}: {} files, {} uploaded ({}), {} already on the host\n  live:    {}\n  preview: {}",
                    summary.site,
                    summary.version,
                    summary.files,
                    summary.uploaded_files,
                    progress::human_bytes(summary.uploaded_bytes),
                    summary.reused_files,
                    summary.url,
                    summary.preview_url
                );
                if !summary.skipped_links.is_empty() {
                    println!(
                        "  {} symlink(s) skipped (see the warnings above)",
                        summary.skipped_links.len()
                    );
                }
                match summary.purge {
                    Some(PurgeState::Pending) => println!("  CDN purge queued (`grove versions` follows it)"),
                    Some(PurgeState::Done) => println!("  CDN purge done"),
                    Some(PurgeState::Failed) | None => {}
                }
                if let Some(sitemap) = &summary.sitemap {
                    println!("  {}", describe_sitemap(sitemap));
                }
            }
            if summary.purge == Some(PurgeState::Failed) {
                return Err(PurgeFailed.into());
            }
        }
        Command::Diff { site, dir, json } => {
            let site = site.site;
            let progress = Progress::new(json);
            let build = LocalBuild::of(&dir, &site, &client, &progress).await?;
            let changes = build.diff(live_tree(&client, &site).await?).await?;
            print_changes(&changes, json);
        }
        Command::Versions { site, json } => versions(&client, &site.site, json).await?,
        Command::Rollback { site, to, json } => {
            let published = client.rollback(&site.site, to).await?;
            if json {
                println!("{}", serde_json::to_string(&published)?);
            } else {
                println!(
                    "{} version {} is live ({} files)\n  live:    {}\n  preview: {}",
                    published.site, published.version, published.files, published.url, published.preview_url
                );
                if published.purge == Some(PurgeState::Pending) {
                    println!("  CDN purge queued (`grove versions` follows it)");
                }
                if let Some(sitemap) = &published.sitemap {
                    println!("  {}", describe_sitemap(sitemap));
                }
            }
        }
        Command::Token(TokenCommand::Grant {
            path,
            rights,
            until,
            json,
        }) => {
            let until = time::OffsetDateTime::now_utc() + until;
            let granted = client.grant(&GrantRequest { path, rights, until }).await?;
            if json {
                println!("{}", serde_json::to_string(&granted)?);
            } else {
                println!("{}", granted.handle);
                eprintln!("valid until {}; shown only this once", granted.until);
            }
        }
        Command::Token(TokenCommand::Revoke { handle, json }) => {
            client.revoke(&handle).await?;
            if json {
                println!("{}", serde_json::json!({ "revoked": true }));
            } else {
                eprintln!("revoked");
            }
        }
        Command::Login { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// The summary's sitemap line.
fn describe_sitemap(sitemap: &SitemapSummary) -> String {
    match sitemap {
        SitemapSummary::Generated { urls, files: 1 } => format!("sitemap: generated, {urls} URLs"),
        SitemapSummary::Generated { urls, files } => {
            format!(
                "sitemap: generated, {urls} URLs in a sitemap index of {} files",
                files - 1
            )
        }
        SitemapSummary::Own(name) => format!("sitemap: the site's own /{name}"),
    }
}

/// Polls version `n`'s purge until it is done or failed.
async fn wait_for_purge(
    client: &Client,
    site: &SiteName,
    n: u64,
    queued: Option<PurgeState>,
    progress: &Progress,
) -> anyhow::Result<Option<PurgeState>> {
    if queued.is_none() {
        progress.notice("this host purges no CDN; nothing to wait for");
        return Ok(None);
    }
    let spinner = progress.spinner("waiting for the CDN purge");
    let status = loop {
        match client.purge(site, n).await {
            Ok(status) if status.state != PurgeState::Pending => break status,
            Ok(_) => {}
            // Queueing failed after the commit; the host catches up.
            Err(error) if error.code() == Some("not_found") => {}
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(PURGE_POLL).await;
    };
    spinner.finish_and_clear();
    if let Some(error) = status.error.as_deref().filter(|_| status.state == PurgeState::Failed) {
        progress.notice(format!("the CDN purge of version {n} failed: {error}"));
    }
    Ok(Some(status.state))
}

/// How often `--wait-purge` asks.
const PURGE_POLL: Duration = Duration::from_millis(500);

/// The version is live, but the CDN may serve what it changed stale: exit 4.
#[derive(Debug, thiserror::Error)]
#[error("published, but the CDN purge failed; the CDN may serve the changed pages stale")]
struct PurgeFailed;

/// Wrong or missing arguments or settings: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct UsageError(anyhow::Error);

fn login(host: String, token: Option<String>) -> anyhow::Result<()> {
    let token = match token {
        Some(token) => token,
        None => {
            eprintln!("token:");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    grove_core::token::Handle::parse(&token)
        .context("the token")
        .map_err(UsageError)?;
    if !(host.starts_with("http://") || host.starts_with("https://")) {
        return Err(UsageError(anyhow::anyhow!("--host must be an http:// or https:// URL")).into());
    }
    let path = Settings {
        host: Some(host),
        token: Some(secrecy::SecretString::from(token)),
    }
    .save()?;
    eprintln!("saved to {}", path.display());
    Ok(())
}

/// The live version's tree, or `None` for a site never published.
async fn live_tree(client: &Client, site: &SiteName) -> anyhow::Result<Option<grove_core::ContentHash>> {
    // The newest version is the live one: a page of one is enough.
    match client.versions(site, None, Some(1)).await {
        Ok(page) => Ok(page
            .versions
            .iter()
            .find(|version| version.n == page.live)
            .map(|version| version.tree)),
        Err(error) if error.code() == Some("not_found") => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn print_changes(changes: &[Difference], json: bool) {
    let paths = |pick: fn(&Difference) -> bool| -> Vec<String> {
        changes
            .iter()
            .filter(|change| pick(change))
            .map(|change| change.path().to_string())
            .collect()
    };
    let added = paths(|change| matches!(change, Difference::Added(_)));
    let changed = paths(|change| matches!(change, Difference::Changed { .. }));
    let removed = paths(|change| matches!(change, Difference::Removed(_)));
    if json {
        let report = serde_json::json!({ "added": added, "changed": changed, "removed": removed });
        println!("{report}");
        return;
    }
    for (mark, paths) in [("+", &added), ("~", &changed), ("-", &removed)] {
        for path in paths {
            println!("{mark} {path}");
        }
    }
    eprintln!(
        "{} added, {} changed, {} removed; nothing was uploaded",
        added.len(),
        changed.len(),
        removed.len()
    );
}

async fn versions(client: &Client, site: &SiteName, json: bool) -> anyhow::Result<()> {
    let mut before = None;
    let mut all = Vec::new();
    let mut purges = std::collections::BTreeMap::new();
    let mut render_failures = Vec::new();
    let live = loop {
        let page = client.versions(site, before, None).await?;
        all.extend(page.versions);
        purges.extend(page.purges.into_iter().map(|purge| (purge.version, purge)));
        render_failures.extend(page.render_failures);
        match page.next_before {
            Some(next) => before = Some(next),
            None => break page.live,
        }
    };
    if json {
        let purges: Vec<_> = purges.into_values().rev().collect();
        println!(
            "{}",
            serde_json::json!({ "live": live, "versions": all, "purges": purges, "render_failures": render_failures })
        );
        return Ok(());
    }
    for version in all {
        let what = match (version.kind, version.restores) {
            (VersionKind::Rollback, Some(restores)) => format!("rollback to {restores}"),
            _ => version.message.clone(),
        };
        let marker = if version.n == live { "*" } else { " " };
        let created = version
            .created_at
            .replace_nanosecond(0)
            .ok()
            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let tree = &version.tree.to_hex()[..12];
        let purge = purges.get(&version.n);
        let state = match purge.map(|purge| purge.state) {
            Some(PurgeState::Pending) => "purge pending",
            Some(PurgeState::Done) => "purged",
            Some(PurgeState::Failed) => "PURGE FAILED",
            None => "",
        };
        println!("{marker} {:>5}  {created}  {tree}  {state:<13}  {what}", version.n);
        if let Some(error) = purge
            .and_then(|purge| purge.error.as_deref())
            .filter(|_| state == "PURGE FAILED")
        {
            println!("         purge error: {error}");
        }
        for failure in render_failures.iter().filter(|failure| failure.version == version.n) {
            println!(
                "         RENDER FAILED {}: {}:{}: {} (its last good page is served)",
                failure.url, failure.template, failure.line, failure.message
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_s_text_is_never_printed_twice() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let scan = grove_core::scan::ScanError::Io {
            path: "dist/a.html".into(),
            source: io,
        };
        let error = anyhow::Error::new(scan).context("hashing dist");
        assert_eq!(
            message_of(&error),
            "hashing dist: reading dist/a.html: No such file or directory (os error 2)"
        );
    }
}
