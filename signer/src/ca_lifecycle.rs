//! The CA lifecycle: add, promote, retire, and what an operator sees of a pool (list,
//! expiry). Pure: every function takes the pool and an explicit `now`; the `signer ca`
//! commands and the controller are thin adapters over it.
//!
//! The rules:
//! - **add**: a new ID only; the CA is trusted at once (it joins the trust bundle) and
//!   does not sign; its `NotSigningSince` is the time it was added.
//! - **promote**: the CA must be in the pool and able to sign now (inside its validity,
//!   with at least [`MIN_LIFETIME`](crate::MIN_LIFETIME) left); the previous signing CA's
//!   `NotSigningSince` becomes `now`. Promoting the signing CA is a no-op.
//! - **retire**: never the signing CA (so never the last CA). A CA that may still have
//!   issued certificates that are valid is refused unless forced: its leaves may be valid
//!   until `NotSigningSince + max_lifetime +` [`RETIRE_ALLOWANCE`] (capped by the CA's
//!   own notAfter, which bounds every leaf it signed). Without a `NotSigningSince` record
//!   (older pools) that bound is the CA's notAfter: refused until the CA has expired.

use std::time::{Duration, SystemTime};

use crate::{CaPool, Error, KeyType, SigningCa, MIN_LIFETIME};

/// Added to a CA's last signing time plus the maximum lifetime before it may be retired:
/// the time a promotion takes to reach every signer replica (Secret → kubelet's
/// projected volume → pool reload, about a minute) and clock skew between the machine
/// that ran `promote` and the signers.
pub const RETIRE_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// Until when the certificates a CA issued may be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafHorizon {
    /// It is the signing CA: it signs now.
    SigningNow,
    /// It stopped signing at `not_signing_since`; its leaves are valid until `until` at
    /// the latest.
    Until {
        /// Its `NotSigningSince`.
        not_signing_since: SystemTime,
        /// The latest notAfter any of its leaves can have.
        until: SystemTime,
    },
    /// No record of when it last signed: its leaves may be valid until its own notAfter.
    Unknown {
        /// The CA certificate's notAfter.
        ca_not_after: SystemTime,
    },
}

impl LeafHorizon {
    /// The time after which no leaf of the CA can be valid; `None` while it signs.
    pub fn valid_until(&self) -> Option<SystemTime> {
        match self {
            LeafHorizon::SigningNow => None,
            LeafHorizon::Until { until, .. } => Some(*until),
            LeafHorizon::Unknown { ca_not_after } => Some(*ca_not_after),
        }
    }
}

/// The outcome of [`CaPool::promote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promotion {
    /// The CA signs from now on; `previous` stopped signing at `now`.
    Promoted {
        /// The previous signing CA's ID.
        previous: String,
    },
    /// The CA was already the signing CA; nothing changed.
    AlreadySigning,
}

/// The outcome of [`CaPool::retire`].
#[derive(Debug)]
pub struct Retirement {
    /// The retired CA's ID.
    pub ca_id: String,
    /// The refusal that `force` overrode ([`Error::MayHaveValidLeaves`] or
    /// [`Error::SigningTimeUnknown`]); `None` when retiring was safe.
    pub forced_over: Option<Error>,
}

/// One CA of a pool as an operator sees it (`signer ca list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSummary {
    /// The CA's ID.
    pub id: String,
    /// Its key type.
    pub key_type: KeyType,
    /// Its root certificate's notBefore.
    pub not_before: SystemTime,
    /// Its root certificate's notAfter.
    pub not_after: SystemTime,
    /// Whether it is the signing CA.
    pub signing: bool,
    /// SHA-256 of the root certificate's DER, lowercase hex (as `openssl x509
    /// -fingerprint -sha256`, without colons).
    pub fingerprint_sha256: String,
    /// Until when its certificates may be valid.
    pub leaves: LeafHorizon,
    /// Whether `retire` would succeed without `--force` at the time of the listing.
    pub retirable: bool,
}

/// The signing CA expires within the warning window (or has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaExpiry {
    /// The signing CA's ID.
    pub ca_id: String,
    /// Its notAfter.
    pub not_after: SystemTime,
    /// Time left; `None` once it has expired.
    pub remaining: Option<Duration>,
}

impl CaPool {
    /// Rotation step 1: adds `ca`, trusted but not signing, recording `now` as its
    /// `NotSigningSince`.
    ///
    /// # Errors
    /// [`Error::DuplicateCaId`] when the pool already holds its ID.
    pub fn add_ca(&mut self, ca: SigningCa, now: SystemTime) -> Result<(), Error> {
        self.push_not_signing(ca, now)
    }

    /// Rotation step 2: makes `ca_id` the signing CA at `now`.
    ///
    /// # Errors
    /// [`Error::NoSuchCa`] for an ID not in the pool; [`Error::PromoteNotValid`] for a CA
    /// that is expired, not yet valid, or has less than `MIN_LIFETIME` left at `now`.
    pub fn promote(&mut self, ca_id: &str, now: SystemTime) -> Result<Promotion, Error> {
        let ca = self.ca(ca_id).ok_or_else(|| Error::NoSuchCa {
            ca_id: ca_id.to_string(),
        })?;
        if now < ca.not_before() || now + MIN_LIFETIME > ca.not_after() {
            return Err(Error::PromoteNotValid {
                ca_id: ca_id.to_string(),
                now,
                not_before: ca.not_before(),
                not_after: ca.not_after(),
            });
        }
        let previous = self.signing_ca().id().to_string();
        if previous == ca_id {
            return Ok(Promotion::AlreadySigning);
        }
        self.switch_signing(ca_id, now)?;
        Ok(Promotion::Promoted { previous })
    }

    /// Until when the certificates `ca_id` issued may be valid, for leaves of at most
    /// `max_lifetime`; `None` for an ID not in the pool.
    pub fn leaf_horizon(&self, ca_id: &str, max_lifetime: Duration) -> Option<LeafHorizon> {
        let ca = self.ca(ca_id)?;
        if self.signing_ca().id() == ca_id {
            return Some(LeafHorizon::SigningNow);
        }
        Some(match self.not_signing_since(ca_id) {
            Some(since) => LeafHorizon::Until {
                not_signing_since: since,
                until: (since + max_lifetime + RETIRE_ALLOWANCE).min(ca.not_after()),
            },
            None => LeafHorizon::Unknown {
                ca_not_after: ca.not_after(),
            },
        })
    }

    /// Rotation step 3: removes `ca_id` from the pool (and so from the trust bundle).
    ///
    /// With `force`, the two "may still have valid leaves" refusals are overridden and
    /// returned in [`Retirement::forced_over`]; the others never are.
    ///
    /// # Errors
    /// [`Error::NoSuchCa`]; [`Error::RetireSigningCa`] for the signing CA (also the last
    /// CA); unless `force`, [`Error::MayHaveValidLeaves`] while `now` is before the leaf
    /// horizon and [`Error::SigningTimeUnknown`] for a CA without a record that has not
    /// expired.
    pub fn retire(
        &mut self,
        ca_id: &str,
        now: SystemTime,
        max_lifetime: Duration,
        force: bool,
    ) -> Result<Retirement, Error> {
        let forced_over = match self.retire_refusal(ca_id, now, max_lifetime)? {
            Some(refusal) if !force => return Err(refusal),
            overridden => overridden,
        };
        self.remove_not_signing(ca_id)?;
        Ok(Retirement {
            ca_id: ca_id.to_string(),
            forced_over,
        })
    }

    /// `Err` for refusals `force` cannot override; `Ok(Some(_))` for those it can.
    fn retire_refusal(
        &self,
        ca_id: &str,
        now: SystemTime,
        max_lifetime: Duration,
    ) -> Result<Option<Error>, Error> {
        let horizon = self
            .leaf_horizon(ca_id, max_lifetime)
            .ok_or_else(|| Error::NoSuchCa {
                ca_id: ca_id.to_string(),
            })?;
        Ok(match horizon {
            LeafHorizon::SigningNow => {
                return Err(Error::RetireSigningCa {
                    ca_id: ca_id.to_string(),
                    only_ca: self.cas().len() == 1,
                })
            }
            LeafHorizon::Until {
                not_signing_since,
                until,
            } if now < until => Some(Error::MayHaveValidLeaves {
                ca_id: ca_id.to_string(),
                not_signing_since,
                until,
                max_lifetime,
            }),
            LeafHorizon::Unknown { ca_not_after } if now < ca_not_after => {
                Some(Error::SigningTimeUnknown {
                    ca_id: ca_id.to_string(),
                    not_after: ca_not_after,
                })
            }
            LeafHorizon::Until { .. } | LeafHorizon::Unknown { .. } => None,
        })
    }

    /// Every CA as an operator sees it at `now`, in pool order.
    pub fn describe(&self, now: SystemTime, max_lifetime: Duration) -> Vec<CaSummary> {
        self.cas()
            .iter()
            .map(|ca| {
                let id = ca.id();
                CaSummary {
                    id: id.to_string(),
                    key_type: ca.key_type(),
                    not_before: ca.not_before(),
                    not_after: ca.not_after(),
                    signing: self.signing_ca().id() == id,
                    fingerprint_sha256: fingerprint(ca.root_der()),
                    leaves: self
                        .leaf_horizon(id, max_lifetime)
                        .unwrap_or(LeafHorizon::SigningNow),
                    retirable: matches!(self.retire_refusal(id, now, max_lifetime), Ok(None)),
                }
            })
            .collect()
    }

    /// The signing CA if it expires within `window` of `now` (or has expired).
    pub fn signing_ca_expiry(&self, now: SystemTime, window: Duration) -> Option<CaExpiry> {
        let ca = self.signing_ca();
        if ca.not_after() > now + window {
            return None;
        }
        Some(CaExpiry {
            ca_id: ca.id().to_string(),
            not_after: ca.not_after(),
            remaining: ca.not_after().duration_since(now).ok(),
        })
    }
}

fn fingerprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[path = "ca_lifecycle_tests.rs"]
mod tests;
