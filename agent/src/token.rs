//! The ServiceAccount token: re-read from its file for every issuance attempt
//! (kubelet rotates projected tokens), and its unverified claims read only to
//! name the pod when `POD_NAME` / `POD_NAMESPACE` are not set. The API server
//! verifies the token; nothing here trusts its claims for authorization.

use std::path::Path;

use base64::Engine as _;

use crate::error::AgentError;

/// The largest token file accepted.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Reads the token from `path` (trimmed, non-empty, at most [`MAX_TOKEN_BYTES`]).
pub fn read(path: &Path) -> Result<String, AgentError> {
    let fail = |reason: String| AgentError::Token {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(fail(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("empty".into()));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("contains whitespace or control characters".into()));
    }
    Ok(token.to_string())
}

/// The pod's (namespace, name) from a pod-bound token's `kubernetes.io` claim,
/// unverified. `None` if the token is not a JWT bound to a pod.
pub fn pod_from_claims(token: &str) -> Option<(String, String)> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let k = v.get("kubernetes.io")?;
    let ns = k.get("namespace")?.as_str()?;
    let pod = k.get("pod")?.get("name")?.as_str()?;
    Some((ns.to_string(), pod.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(b"{\"alg\":\"RS256\"}"),
            e.encode(claims.to_string())
        )
    }

    #[test]
    fn reads_pod_from_bound_token_claims() {
        let t = jwt(
            serde_json::json!({"kubernetes.io": {"namespace": "ns", "pod": {"name": "p", "uid": "u"}}}),
        );
        assert_eq!(pod_from_claims(&t), Some(("ns".into(), "p".into())));
        let unbound = jwt(serde_json::json!({"kubernetes.io": {"namespace": "ns"}}));
        assert_eq!(pod_from_claims(&unbound), None);
        assert_eq!(pod_from_claims("garbage"), None);
        assert_eq!(pod_from_claims("a.!!!.c"), None);
    }

    #[test]
    fn token_file_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("token");
        std::fs::write(&p, "abc.def.ghi\n").unwrap();
        assert_eq!(read(&p).unwrap(), "abc.def.ghi");
        for bad in ["", "  \n", "a b", "a\u{7}b"] {
            std::fs::write(&p, bad).unwrap();
            assert!(read(&p).is_err(), "{bad:?}");
        }
        std::fs::write(&p, "a".repeat(MAX_TOKEN_BYTES + 1)).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("larger than"));
        assert!(read(&tmp.path().join("missing")).is_err());
    }
}
