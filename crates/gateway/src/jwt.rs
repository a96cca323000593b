//! JWT authorizers: RS256 signature check against the issuer's JWKS (RSASSA-PKCS1-v1_5
//! with SHA-256: `s^e mod n` compared with the encoded digest — verification needs only
//! public data, so a big-integer crate is all it takes), then `iss`, `aud`/`client_id`,
//! `exp`, `nbf` and the route's scopes, as API Gateway checks them.
use base64::Engine as _;
use num_bigint::BigUint;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// ASN.1 DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0x04, 0x20,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
    #[error("signature mismatch")]
    Signature,
    #[error("issuer mismatch")]
    Issuer,
    #[error("audience mismatch")]
    Audience,
    #[error("token expired or not yet valid")]
    Expired,
}

/// A JWT split into its parts.
#[derive(Debug, Clone)]
pub struct Token {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

fn json_part(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = B64URL.decode(part.trim_end_matches('=')).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed),
    }
}

impl Token {
    /// Accepts `Bearer <jwt>` as API Gateway does.
    pub fn parse(raw: &str) -> Result<Token, JwtError> {
        let raw = raw.trim();
        let raw = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
        let mut parts = raw.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        Ok(Token {
            header: json_part(h)?,
            claims: json_part(c)?,
            signing_input: format!("{h}.{c}"),
            signature: B64URL.decode(s.trim_end_matches('=')).map_err(|_| JwtError::Malformed)?,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Verifies the RS256 signature with the JWKS key named by `kid`.
    pub fn verify_signature(&self, jwks: &Value) -> Result<(), JwtError> {
        let alg = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != "RS256" {
            return Err(JwtError::Algorithm(alg.to_string()));
        }
        let keys = jwks.get("keys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let key = keys
            .iter()
            .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
            .find(|k| self.kid().is_none() || k.get("kid").and_then(Value::as_str) == self.kid())
            .ok_or_else(|| JwtError::UnknownKey(self.kid().map(str::to_string)))?;
        let field = |name: &str| -> Result<Vec<u8>, JwtError> {
            let s = key.get(name).and_then(Value::as_str).ok_or(JwtError::Malformed)?;
            B64URL.decode(s.trim_end_matches('=')).map_err(|_| JwtError::Malformed)
        };
        verify_rs256(&field("n")?, &field("e")?, self.signing_input.as_bytes(), &self.signature)
    }

    /// Checks `iss`, `aud` (or `client_id` for access tokens), `exp` and `nbf` at `now`.
    pub fn validate_claims(&self, issuer: &str, audiences: &[String], now_secs: i64) -> Result<(), JwtError> {
        if self.claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(JwtError::Issuer);
        }
        let mut token_aud: Vec<&str> = match self.claims.get("aud") {
            Some(Value::String(a)) => vec![a],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(c) = self.claims.get("client_id").and_then(Value::as_str) {
            token_aud.push(c);
        }
        if !audiences.iter().any(|a| token_aud.contains(&a.as_str())) {
            return Err(JwtError::Audience);
        }
        let number = |k: &str| self.claims.get(k).and_then(Value::as_f64);
        match number("exp") {
            Some(exp) if (exp as i64) > now_secs => {}
            _ => return Err(JwtError::Expired),
        }
        if number("nbf").is_some_and(|nbf| nbf as i64 > now_secs) {
            return Err(JwtError::Expired);
        }
        Ok(())
    }

    /// The token's scopes (`scope` space-separated, or an `scp` list).
    pub fn scopes(&self) -> Vec<String> {
        match (self.claims.get("scope"), self.claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
            (_, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether a token with `scopes` may call a route that requires `required` (any one).
pub fn scopes_allow(required: &[String], scopes: &[String]) -> bool {
    required.is_empty() || required.iter().any(|r| scopes.contains(r))
}

/// RSASSA-PKCS1-v1_5 verification with SHA-256 (RFC 8017 §8.2.2).
pub fn verify_rs256(n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> Result<(), JwtError> {
    let n = BigUint::from_bytes_be(n);
    let e = BigUint::from_bytes_be(e);
    let k = n.to_bytes_be().len();
    if signature.len() != k || k < SHA256_DIGEST_INFO.len() + 32 + 11 {
        return Err(JwtError::Signature);
    }
    let s = BigUint::from_bytes_be(signature);
    if s >= n {
        return Err(JwtError::Signature);
    }
    let m = s.modpow(&e, &n).to_bytes_be();
    let mut em = vec![0u8; k - m.len()];
    em.extend_from_slice(&m);
    let mut expected = vec![0x00, 0x01];
    expected.resize(k - SHA256_DIGEST_INFO.len() - 32 - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(&SHA256_DIGEST_INFO);
    expected.extend_from_slice(&Sha256::digest(message));
    if em == expected { Ok(()) } else { Err(JwtError::Signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1024-bit key's modulus and an `openssl dgst -sha256 -sign` signature of `a.b`.
    const N_HEX: &str = "ADF3270B10365F6D7D46662A5CA46B5AF854A343BB8CA1C6153B1C1FFD3B180EDE30D41BDB344DEDAD421EAC975977CA97B854BC9A3ED4D9C07715F83FC017C6A463E31876DE96DC6F36D8360C1531527CB977575D3CF378BA8A12AC8DADA09841BEB1DF61DDF5F578328F0CCCE4D869E9D996DF7E41B98918678339BF3AA321";
    const SIG_HEX: &str = "036f787efa3ac73b89b06f721792daa4807ce011ebed52007b9c457c87a196193df964ee7befd156fd1d5366758f464eadc6ac5f93634dd09803e219ebf1fc10bb8c87aeed7a0dba9a1d14a07bc748fe9e894ba06482c0c627ca5d011dc341fa3ad1b6c168e48488a94aab65bad82d858b07bb9f59c693e250ea9136efc6480b";

    #[test]
    fn rs256_round_trip_and_tamper() {
        let n = hex::decode(N_HEX).unwrap();
        let mut sig = hex::decode(SIG_HEX).unwrap();
        let e = [1u8, 0, 1];
        verify_rs256(&n, &e, b"a.b", &sig).unwrap();
        assert_eq!(verify_rs256(&n, &e, b"a.c", &sig), Err(JwtError::Signature));
        sig[10] ^= 1;
        assert_eq!(verify_rs256(&n, &e, b"a.b", &sig), Err(JwtError::Signature));
    }

    #[test]
    fn claims_and_scopes() {
        let claims = r#"{"iss":"http://idp","aud":["api"],"exp":2000,"nbf":1000,"scope":"read write"}"#;
        let raw =
            format!("{}.{}.{}", B64URL.encode(r#"{"alg":"RS256","kid":"k1"}"#), B64URL.encode(claims), "AA");
        let t = Token::parse(&format!("Bearer {raw}")).unwrap();
        assert_eq!(t.kid(), Some("k1"));
        t.validate_claims("http://idp", &["api".into()], 1500).unwrap();
        assert_eq!(t.validate_claims("http://other", &["api".into()], 1500), Err(JwtError::Issuer));
        assert_eq!(t.validate_claims("http://idp", &["x".into()], 1500), Err(JwtError::Audience));
        assert_eq!(t.validate_claims("http://idp", &["api".into()], 2500), Err(JwtError::Expired));
        assert_eq!(t.validate_claims("http://idp", &["api".into()], 500), Err(JwtError::Expired));
        assert_eq!(t.scopes(), vec!["read".to_string(), "write".to_string()]);
        assert!(scopes_allow(&["write".into()], &t.scopes()));
        assert!(!scopes_allow(&["admin".into()], &t.scopes()));
        assert!(Token::parse("a.b").is_err());
        assert_eq!(
            t.verify_signature(&serde_json::json!({"keys": []})),
            Err(JwtError::UnknownKey(Some("k1".into())))
        );
    }
}
