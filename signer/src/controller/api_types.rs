//! PodCertificateRequest as served by certificates.k8s.io/v1beta1 (1.35, 1.36) and v1
//! (1.37), as one serde type whose API version is chosen at run time (discovery), plus
//! the pure conversions to and from the issuer's types.
//!
//! One struct covers both versions: the spec is the union of their fields (v1 has no
//! `pkixPublicKey`/`proofOfPossession`; 1.35's v1beta1 has no `stubPKCS10Request`) and
//! the status fields are the same in both. kube's [`Resource`] is implemented with an
//! [`ApiResource`] as the dynamic type, like `DynamicObject`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::ByteString;
use kube::core::{ApiResource, DynamicResourceScope, TypeMeta};
use kube::Resource;
use serde::{Deserialize, Serialize};

use crate::{Denial, Failure, IssuanceRequest, Issued, KeyMaterial};

/// The condition type of an issued request.
pub const CONDITION_ISSUED: &str = "Issued";
/// The condition type of a denied request.
pub const CONDITION_DENIED: &str = "Denied";
/// The condition type of a failed request.
pub const CONDITION_FAILED: &str = "Failed";

/// A PodCertificateRequest (certificates.k8s.io v1beta1 or v1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodCertificateRequest {
    /// `apiVersion` and `kind`, as served.
    #[serde(flatten, default)]
    pub types: Option<TypeMeta>,
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: PodCertificateRequestSpec,
    /// `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodCertificateRequestStatus>,
}

/// `spec` of a PodCertificateRequest: the union of the v1beta1 and v1 fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificateRequestSpec {
    /// `signerName`.
    #[serde(default)]
    pub signer_name: String,
    /// `podName`.
    #[serde(default)]
    pub pod_name: String,
    /// `podUID`.
    #[serde(default, rename = "podUID")]
    pub pod_uid: String,
    /// `serviceAccountName`.
    #[serde(default)]
    pub service_account_name: String,
    /// `serviceAccountUID`.
    #[serde(default, rename = "serviceAccountUID")]
    pub service_account_uid: String,
    /// `nodeName`.
    #[serde(default)]
    pub node_name: String,
    /// `nodeUID`.
    #[serde(default, rename = "nodeUID")]
    pub node_uid: String,
    /// `maxExpirationSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration_seconds: Option<i32>,
    /// `pkixPublicKey` (v1beta1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkix_public_key: Option<ByteString>,
    /// `proofOfPossession` (v1beta1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_of_possession: Option<ByteString>,
    /// `stubPKCS10Request` (1.36 v1beta1, v1).
    #[serde(
        default,
        rename = "stubPKCS10Request",
        skip_serializing_if = "Option::is_none"
    )]
    pub stub_pkcs10_request: Option<ByteString>,
    /// `unverifiedUserAnnotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_user_annotations: Option<BTreeMap<String, String>>,
}

/// `status` of a PodCertificateRequest (same fields in v1beta1 and v1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificateRequestStatus {
    /// `conditions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// `certificateChain`: PEM, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<String>,
    /// `notBefore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// `notAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// `beginRefreshAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_refresh_at: Option<Time>,
}

impl Resource for PodCertificateRequest {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The terminal condition of a request, if it has one: an `Issued`, `Denied` or `Failed`
/// condition with status `True`. Such requests are never touched again.
pub fn terminal_condition(pcr: &PodCertificateRequest) -> Option<&Condition> {
    pcr.status.as_ref()?.conditions.as_ref()?.iter().find(|c| {
        c.status == "True"
            && matches!(
                c.type_.as_str(),
                CONDITION_ISSUED | CONDITION_DENIED | CONDITION_FAILED
            )
    })
}

/// Converts a served request into the issuer's view. Key material that is neither one
/// source nor the other is a denial (`InvalidKeyMaterial`).
pub fn issuance_request(pcr: &PodCertificateRequest) -> Result<IssuanceRequest, Denial> {
    let bytes = |b: &Option<ByteString>| b.as_ref().map(|b| b.0.clone()).unwrap_or_default();
    let spec = &pcr.spec;
    let key_material = KeyMaterial::from_spec_fields(
        &bytes(&spec.pkix_public_key),
        &bytes(&spec.proof_of_possession),
        &bytes(&spec.stub_pkcs10_request),
    )?;
    Ok(IssuanceRequest {
        namespace: pcr.metadata.namespace.clone().unwrap_or_default(),
        name: pcr.metadata.name.clone().unwrap_or_default(),
        signer_name: spec.signer_name.clone(),
        pod_name: spec.pod_name.clone(),
        pod_uid: spec.pod_uid.clone(),
        service_account_name: spec.service_account_name.clone(),
        service_account_uid: spec.service_account_uid.clone(),
        node_name: spec.node_name.clone(),
        node_uid: spec.node_uid.clone(),
        max_expiration_seconds: spec.max_expiration_seconds,
        key_material,
        unverified_user_annotations: spec.unverified_user_annotations.clone().unwrap_or_default(),
    })
}

/// A Kubernetes `Time` (whole seconds, as the API serialises it). Times before 1970 or
/// beyond jiff's range become the epoch (never produced by the issuer).
pub fn k8s_time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The `SystemTime` of a Kubernetes timestamp (whole seconds).
pub fn system_time(t: &Timestamp) -> SystemTime {
    match u64::try_from(t.as_second()) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

fn condition(
    type_: &str,
    reason: &str,
    message: &str,
    now: SystemTime,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: reason.to_string(),
        message: crate::denial::cap_message(message.to_string()),
        last_transition_time: k8s_time(now),
        observed_generation: generation,
    }
}

/// The status that records an issued certificate: the `Issued` condition plus
/// `certificateChain`, `notBefore`, `notAfter` and `beginRefreshAt`.
pub fn issued_status(
    issued: &Issued,
    now: SystemTime,
    generation: Option<i64>,
) -> PodCertificateRequestStatus {
    PodCertificateRequestStatus {
        conditions: Some(vec![condition(
            CONDITION_ISSUED,
            "Issued",
            &format!("issued by CA {} (serial {})", issued.ca_id, issued.serial),
            now,
            generation,
        )]),
        certificate_chain: Some(issued.certificate_chain.clone()),
        not_before: Some(k8s_time(issued.not_before)),
        not_after: Some(k8s_time(issued.not_after)),
        begin_refresh_at: Some(k8s_time(issued.begin_refresh_at)),
    }
}

/// The status that records a denial.
pub fn denied_status(
    denial: &Denial,
    now: SystemTime,
    generation: Option<i64>,
) -> PodCertificateRequestStatus {
    PodCertificateRequestStatus {
        conditions: Some(vec![condition(
            CONDITION_DENIED,
            denial.reason.as_str(),
            &denial.message,
            now,
            generation,
        )]),
        ..Default::default()
    }
}

/// The status that records a failure.
pub fn failed_status(
    failure: &Failure,
    now: SystemTime,
    generation: Option<i64>,
) -> PodCertificateRequestStatus {
    PodCertificateRequestStatus {
        conditions: Some(vec![condition(
            CONDITION_FAILED,
            failure.reason.as_str(),
            &failure.message,
            now,
            generation,
        )]),
        ..Default::default()
    }
}
