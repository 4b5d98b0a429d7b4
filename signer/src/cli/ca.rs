//! `signer ca list|add|promote|retire`: the CA lifecycle on a pool Secret or file. A thin
//! adapter: the rules are `signer::CaPool`'s (`add_ca`, `promote`, `retire`,
//! `describe`), evaluated at the current time; this reads and writes the pool
//! ([`PoolStore`]) and prints.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{ArgAction, Args, Subcommand, ValueEnum};
use signer::{generate_ca, CaSummary, KeyType, LeafHorizon, Promotion};

use super::pool_store::PoolStore;

/// `signer ca ...`
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// List the pool's CAs: ID, key type, validity, signing or not, until when their
    /// certificates may be valid, whether `retire` would accept them, SHA-256 fingerprint.
    List(ListArgs),
    /// Add a new CA to the pool, trusted but not signing (rotation step 1). Wait until
    /// every pod's trust bundle carries it before promoting it.
    Add(AddArgs),
    /// Make a CA of the pool the signing CA (rotation step 2).
    Promote(IdArgs),
    /// Remove a CA from the pool and so from the trust bundles (rotation step 3). Refuses
    /// the signing CA, and, unless --force, a CA whose certificates may still be valid:
    /// one that stopped signing less than --max-lifetime (+10 min) ago, or has no record
    /// of when it stopped and has not expired.
    Retire(RetireArgs),
}

/// Which pool: the Secret (default) or a file.
#[derive(Args, Debug)]
pub struct PoolFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the pool Secret.
    #[arg(long, env = "SIGNER_NAMESPACE")]
    namespace: Option<String>,
    /// Name of the pool Secret (the pool JSON is under key `pool`).
    #[arg(long, env = "SIGNER_NAME")]
    name: Option<String>,
    /// Work on this pool JSON file instead of a Secret.
    #[arg(long, env = "SIGNER_POOL_FILE")]
    file: Option<PathBuf>,
}

impl PoolFlags {
    fn store(&self) -> anyhow::Result<PoolStore> {
        PoolStore::from_flags(
            self.file.as_deref(),
            self.namespace.as_deref(),
            self.name.as_deref(),
            self.kubeconfig.as_deref(),
        )
    }
}

/// The longest certificate lifetime the signer issues (its `max_lifetime`).
#[derive(Args, Debug)]
pub struct MaxLifetime {
    /// The signer's maximum certificate lifetime: a CA's certificates may be valid until
    /// its last signing time plus this (plus 10 minutes for the pool to reach every
    /// replica and for clock skew).
    #[arg(long, env = "SIGNER_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    max_lifetime: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pool: PoolFlags,
    #[command(flatten)]
    max_lifetime: MaxLifetime,
    /// Output format: an aligned table, or a JSON array (one object per CA).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pool: PoolFlags,
    /// The ID of the new CA.
    #[arg(long, env = "SIGNER_CA_ID")]
    ca_id: String,
    /// Key type of the new CA: ED25519 (as meshtool), ECDSAP256, ECDSAP384, ECDSAP521,
    /// RSA3072 or RSA4096.
    #[arg(long, env = "SIGNER_KEY_TYPE", default_value = "ED25519")]
    key_type: KeyType,
    /// Validity of the new CA's root certificate, in days.
    #[arg(long, env = "SIGNER_CA_VALIDITY_DAYS", default_value_t = 365)]
    ca_validity_days: u32,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pool: PoolFlags,
    /// The CA's ID.
    #[arg(long, env = "SIGNER_CA_ID")]
    ca_id: String,
}

#[derive(Args, Debug)]
pub struct RetireArgs {
    #[command(flatten)]
    pool: PoolFlags,
    /// The CA's ID.
    #[arg(long, env = "SIGNER_CA_ID")]
    ca_id: String,
    #[command(flatten)]
    max_lifetime: MaxLifetime,
    /// Retire even if certificates the CA issued may still be valid (they stop verifying
    /// once the trust bundles drop it). Never retires the signing CA.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    force: bool,
}

/// Runs one `ca` subcommand.
pub fn run(command: &CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::List(args) => list(args),
        CaCommand::Add(args) => add(args),
        CaCommand::Promote(args) => promote(&args.pool.store()?, &args.ca_id),
        CaCommand::Retire(args) => retire(args),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let store = args.pool.store()?;
    let pool = store.read()?;
    let cas = pool.describe(SystemTime::now(), args.max_lifetime.max_lifetime);
    let text = match args.output {
        Output::Table => table(&cas),
        Output::Json => {
            serde_json::to_string_pretty(&cas.iter().map(json).collect::<Vec<_>>())? + "\n"
        }
    };
    print!("{text}");
    Ok(())
}

/// RFC 3339 UTC with seconds; certificate times before 1970 format too.
fn rfc3339(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

fn leaves(h: &LeafHorizon) -> String {
    match h {
        LeafHorizon::SigningNow => "signing now".into(),
        LeafHorizon::Until { until, .. } => format!("until {}", rfc3339(*until)),
        LeafHorizon::Unknown { ca_not_after } => {
            format!("unknown (until {})", rfc3339(*ca_not_after))
        }
    }
}

fn json(c: &CaSummary) -> serde_json::Value {
    let (since, until) = match c.leaves {
        LeafHorizon::SigningNow => (None, None),
        LeafHorizon::Until {
            not_signing_since,
            until,
        } => (Some(rfc3339(not_signing_since)), Some(rfc3339(until))),
        LeafHorizon::Unknown { ca_not_after } => (None, Some(rfc3339(ca_not_after))),
    };
    serde_json::json!({
        "id": c.id,
        "keyType": c.key_type.to_string(),
        "notBefore": rfc3339(c.not_before),
        "notAfter": rfc3339(c.not_after),
        "signing": c.signing,
        "notSigningSince": since,
        "certificatesValidUntil": until,
        "retirable": c.retirable,
        "sha256": c.fingerprint_sha256,
    })
}

/// An aligned table, one line per CA, pool order.
pub fn table(cas: &[CaSummary]) -> String {
    let header = [
        "ID",
        "KEY TYPE",
        "NOT BEFORE",
        "NOT AFTER",
        "SIGNING",
        "CERTIFICATES VALID",
        "RETIRABLE",
        "SHA-256",
    ];
    let rows: Vec<[String; 8]> = cas
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.key_type.to_string(),
                rfc3339(c.not_before),
                rfc3339(c.not_after),
                if c.signing { "yes" } else { "no" }.into(),
                leaves(&c.leaves),
                if c.retirable { "yes" } else { "no" }.into(),
                c.fingerprint_sha256.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn add(args: &AddArgs) -> anyhow::Result<()> {
    let store = args.pool.store()?;
    let validity = Duration::from_secs(u64::from(args.ca_validity_days) * 24 * 3600);
    let pool = store.update(|mut pool| {
        let now = SystemTime::now();
        let ca = generate_ca(&args.ca_id, args.key_type, now, validity)?;
        pool.add_ca(ca, now)?;
        Ok(pool)
    })?;
    tracing::info!(pool = %store, ca_id = %args.ca_id, key_type = %args.key_type, cas = pool.cas().len(), signing_ca = %pool.signing_ca().id(), "added CA (trusted, not signing); promote it once every trust bundle carries it");
    Ok(())
}

/// Promotes `ca_id` in `store` (also `set-signing-ca`).
pub fn promote(store: &PoolStore, ca_id: &str) -> anyhow::Result<()> {
    let mut outcome = Promotion::AlreadySigning;
    store.update(|mut pool| {
        outcome = pool.promote(ca_id, SystemTime::now())?;
        Ok(pool)
    })?;
    match outcome {
        Promotion::Promoted { previous } => {
            tracing::info!(pool = %store, signing_ca = %ca_id, %previous, "promoted CA: it signs from now on; retire the previous CA once its certificates have expired")
        }
        Promotion::AlreadySigning => {
            tracing::info!(pool = %store, signing_ca = %ca_id, "CA already signs; nothing changed")
        }
    }
    Ok(())
}

fn retire(args: &RetireArgs) -> anyhow::Result<()> {
    let store = args.pool.store()?;
    let mut forced_over = None;
    let pool = store
        .update(|mut pool| {
            let retired = pool.retire(
                &args.ca_id,
                SystemTime::now(),
                args.max_lifetime.max_lifetime,
                args.force,
            )?;
            forced_over = retired.forced_over.map(|e| e.to_string());
            Ok(pool)
        })
        .with_context(|| format!("retiring CA {:?}", args.ca_id))?;
    if let Some(refusal) = forced_over {
        tracing::warn!(pool = %store, ca_id = %args.ca_id, overridden = %refusal, "retired CA with --force");
    }
    tracing::info!(pool = %store, ca_id = %args.ca_id, cas = pool.cas().len(), signing_ca = %pool.signing_ca().id(), "retired CA: the trust bundles drop it");
    Ok(())
}
