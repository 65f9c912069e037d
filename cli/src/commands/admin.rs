//! `dockyard admin`: API tokens and per-organisation quotas (run with the admin token).

use anyhow::Result;
use clap::Subcommand;

use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};
use crate::output::Format;

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// API tokens: create, revoke, list.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Per-organisation limits: set, get.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Write a consistent snapshot of the coordinator's state; restore it with
    /// `dockyard-coordinator --restore-from URI` into an empty data folder.
    #[command(after_help = "Examples:
  dockyard admin backup --to file:///var/backups/dockyard
  dockyard admin backup --to 's3://backups/dockyard?endpoint=http://minio:9000&preset=minio' --format json")]
    Backup {
        /// Where: file:///DIR or s3://BUCKET/PREFIX, as the coordinator reaches it (it
        /// writes the snapshot, in a folder of its own under this location).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; prints ONLY the token on stdout (it is shown once).
    #[command(after_help = "Examples:
  TOKEN=$(dockyard --token \"$ADMIN\" admin token create --org chem --description 'screening pipeline')
  dockyard --token \"$TOKEN\" jobs")]
    Create {
        /// The organisation the token acts for ([a-z0-9-]).
        #[arg(long, required_unless_present = "admin")]
        org: Option<String>,
        /// An admin token instead (revocable, unlike the bootstrap --admin-token-file secret).
        #[arg(long, conflicts_with = "org")]
        admin: bool,
        /// Free text for operators: who or what uses the token.
        #[arg(long, default_value = "")]
        description: String,
        /// Seconds until the token expires [default: never].
        #[arg(long, default_value_t = 0)]
        ttl_s: u64,
    },
    /// Revoke a token: its calls fail and its open streams end within seconds.
    #[command(after_help = "Example:\n  dockyard admin token revoke 3f9a0c21d4e5b678")]
    Revoke { id: String },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Set an organisation's limits; limits not given keep their value, 0 removes one.
    #[command(
        after_help = "Example:\n  dockyard admin quota set --org chem --max-queued-tasks 10000 --max-running 32 --max-bytes 50000000000"
    )]
    Set {
        #[arg(long)]
        org: String,
        /// Tasks queued at once (checked at submission, counting the new job's tasks).
        #[arg(long)]
        max_queued_tasks: Option<u64>,
        /// Tasks running at once (slots).
        #[arg(long)]
        max_running: Option<u64>,
        /// Bytes of inputs stored (uploads and inline submission inputs).
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Share of the cluster's connected slots the organisation may fill, in percent
        /// (0 = no share limit; with --max-running too, the lower wins).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
        max_running_share: Option<u32>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an organisation's limits and current usage.
    Get {
        #[arg(long)]
        org: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

pub async fn run(c: &Client, cmd: AdminCmd) -> Result<()> {
    let mut admin = c.admin.clone();
    match cmd {
        AdminCmd::Token(TokenCmd::Create {
            org,
            admin: as_admin,
            description,
            ttl_s,
        }) => {
            let r = admin
                .create_token(c.req(pb::CreateTokenRequest {
                    org: org.unwrap_or_default(),
                    description,
                    admin: as_admin,
                    ttl_s,
                }))
                .await
                .map_err(explain)?
                .into_inner();
            // stdout is the token alone, for `TOKEN=$(...)`; the rest goes to stderr.
            println!("{}", r.token);
            let whom = if r.org.is_empty() {
                "admin".to_string()
            } else {
                format!("organisation {}", r.org)
            };
            eprintln!("token {} for {whom}; the secret is shown only this once", r.token_id);
        }
        AdminCmd::Token(TokenCmd::Revoke { id }) => {
            let t = admin
                .revoke_token(c.req(pb::RevokeTokenRequest { token_id: id }))
                .await
                .map_err(explain)?
                .into_inner();
            println!("revoked token {}", t.token_id);
        }
        AdminCmd::Token(TokenCmd::List { format }) => {
            let r = admin
                .list_tokens(c.req(pb::ListTokensRequest {}))
                .await
                .map_err(explain)?
                .into_inner();
            print_tokens(&r.tokens, format);
        }
        AdminCmd::Quota(QuotaCmd::Set {
            org,
            max_queued_tasks,
            max_running,
            max_bytes,
            max_running_share,
            format,
        }) => {
            let cur = admin
                .get_quota(c.req(pb::GetQuotaRequest { org: org.clone() }))
                .await
                .map_err(explain)?
                .into_inner();
            let q = admin
                .set_quota(c.req(pb::SetQuotaRequest {
                    org,
                    max_queued_tasks: max_queued_tasks.unwrap_or(cur.max_queued_tasks),
                    max_running_tasks: max_running.unwrap_or(cur.max_running_tasks),
                    max_bytes_stored: max_bytes.unwrap_or(cur.max_bytes_stored),
                    max_running_share_pct: max_running_share.unwrap_or(cur.max_running_share_pct),
                }))
                .await
                .map_err(explain)?
                .into_inner();
            print_quota(&q, format);
        }
        AdminCmd::Quota(QuotaCmd::Get { org, format }) => {
            let q = admin
                .get_quota(c.req(pb::GetQuotaRequest { org }))
                .await
                .map_err(explain)?
                .into_inner();
            print_quota(&q, format);
        }
        AdminCmd::Backup { to, format } => {
            let b = admin.backup(c.req(pb::BackupRequest { to })).await.map_err(explain)?.into_inner();
            if format == Format::Json {
                let v = serde_json::json!({
                    "id": b.id, "uri": b.uri, "commit_position": b.commit_position, "bytes": b.bytes,
                    "records": b.records, "pause_ms": b.pause_ms, "artifact_keys": b.artifact_keys, "seconds": b.seconds,
                });
                println!("{v}");
            } else {
                println!("snapshot {} written to {}", b.id, b.uri);
                println!(
                    "  {} records at commit {}, {} bytes, {} artifact keys listed; dispatch held {:.3} ms, {:.2} s in all",
                    b.records, b.commit_position, b.bytes, b.artifact_keys, b.pause_ms, b.seconds
                );
                println!("  restore: dockyard-coordinator --data-dir NEW_EMPTY_DIR --restore-from {}", b.uri);
            }
        }
    }
    Ok(())
}

fn limit(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn print_quota(q: &pb::Quota, f: Format) {
    if f == Format::Json {
        let v = serde_json::json!({
            "org": q.org,
            "max_queued_tasks": q.max_queued_tasks, "queued_tasks": q.queued_tasks,
            "max_running_tasks": q.max_running_tasks, "running_tasks": q.running_tasks,
            "max_bytes_stored": q.max_bytes_stored, "bytes_stored": q.bytes_stored,
            "max_running_share_pct": q.max_running_share_pct,
        });
        println!("{v}");
        return;
    }
    println!("organisation {}", q.org);
    println!("  queued tasks:  {} of {}", q.queued_tasks, limit(q.max_queued_tasks));
    println!("  running tasks: {} of {}", q.running_tasks, limit(q.max_running_tasks));
    if q.max_running_share_pct > 0 {
        println!("  running share: at most {}% of the cluster's slots", q.max_running_share_pct);
    }
    println!("  bytes stored:  {} of {}", q.bytes_stored, limit(q.max_bytes_stored));
}

fn print_tokens(tokens: &[pb::TokenInfo], f: Format) {
    match f {
        Format::Json => {
            let v: Vec<serde_json::Value> = tokens
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "token_id": t.token_id, "org": t.org, "admin": t.admin, "description": t.description,
                        "created_at_ms": t.created_at_ms, "revoked": t.revoked, "revoked_at_ms": t.revoked_at_ms,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Csv => {
            println!("token_id,org,admin,revoked,created_at_ms,description");
            for t in tokens {
                println!(
                    "{},{},{},{},{},\"{}\"",
                    t.token_id,
                    t.org,
                    t.admin,
                    t.revoked,
                    t.created_at_ms,
                    t.description.replace('"', "\"\"")
                );
            }
        }
        Format::Table => {
            println!("{:<16}  {:<20}  {:<8}  DESCRIPTION", "TOKEN", "ORG", "STATE");
            for t in tokens {
                let who = if t.admin { "(admin)" } else { t.org.as_str() };
                let state = if t.revoked { "revoked" } else { "active" };
                println!("{:<16}  {:<20}  {:<8}  {}", t.token_id, who, state, t.description);
            }
        }
    }
}
