//! The CLI's one HTTP client (`nimbus image`, `nimbus advise`). Requests to the Nimbus API
//! (`/_nimbus/*`) are SigV4-signed when AWS credentials are in the environment, so the CLI
//! works against `nimbus server --auth strict`; registry requests go unsigned (the registry
//! listener has its own ECR-token auth).
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use nimbus_api::sigv4::{self, SigningCredentials};
use sha2::{Digest, Sha256};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// The service name in the credential scope: the server verifies the signature with the
/// scope the client states and does not pin a service for `/_nimbus/*`.
const SIGNING_SERVICE: &str = "nimbus";

pub struct Http {
    client: Client<HttpConnector, Body>,
    creds: Option<SigningCredentials>,
}

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: hyper::body::Incoming,
}

impl Resp {
    pub async fn bytes(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.body.collect().await?.to_bytes().to_vec())
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

pub fn empty_body() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

pub fn bytes_body(b: Vec<u8>) -> Body {
    http_body_util::Full::new(Bytes::from(b)).map_err(|never| match never {}).boxed()
}

/// Hex SHA-256, the SigV4 payload hash.
pub fn payload_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Credentials as the AWS CLI / SDKs read them from the environment (no profiles): both
/// keys or nothing; region from `AWS_REGION`, then `AWS_DEFAULT_REGION`, else us-east-1.
fn env_credentials(var: impl Fn(&str) -> Option<String>) -> Option<SigningCredentials> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    Some(SigningCredentials {
        access_key_id: set("AWS_ACCESS_KEY_ID")?,
        secret_access_key: set("AWS_SECRET_ACCESS_KEY")?,
        session_token: set("AWS_SESSION_TOKEN"),
        region: set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
        service: SIGNING_SERVICE.into(),
    })
}

impl Http {
    pub fn new() -> Http {
        Http {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            creds: env_credentials(|k| std::env::var(k).ok()),
        }
    }

    /// An unsigned request (the registry listener).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> anyhow::Result<Resp> {
        self.request(method, url, headers, body, None).await
    }

    /// A request to the Nimbus API, signed when credentials are available. `payload_hash`
    /// is the body's hex SHA-256 (callers streaming a file hash it first).
    pub async fn send_api(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
        payload_hash: &str,
    ) -> anyhow::Result<Resp> {
        match self.request(method, url, headers, body, Some(payload_hash)).await {
            Ok(r) => Ok(r),
            Err(e) => {
                // A server that refuses a request before reading its body (bad or missing
                // credentials) may reset the connection mid-upload, losing its answer. Ask
                // again without the body: a refusal then arrives intact; otherwise keep
                // the original error. The empty request has no effect either way.
                let probe = self.request(method, url, headers, empty_body(), Some(&self::payload_hash(b""))).await;
                match probe {
                    Ok(r) if r.status == 401 || r.status == 403 => Ok(r),
                    _ => Err(e),
                }
            }
        }
    }

    async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
        sign_with: Option<&str>,
    ) -> anyhow::Result<Resp> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body).with_context(|| format!("{method} {url}"))?;
        if let (Some(hash), Some(creds)) = (sign_with, &self.creds) {
            let uri = req.uri().clone();
            let host = uri.authority().with_context(|| format!("{url}: no host"))?.as_str().to_string();
            let h = req.headers_mut();
            h.insert(hyper::header::HOST, host.parse()?);
            h.insert("x-amz-content-sha256", hash.parse()?);
            sigv4::sign(method, uri.path(), uri.query().unwrap_or(""), h, hash, creds, chrono::Utc::now())
                .map_err(|e| anyhow::anyhow!("signing {method} {url}: {e}"))?;
        }
        let resp = self.client.request(req).await.with_context(|| format!("{method} {url}"))?;
        let (parts, body) = resp.into_parts();
        Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    /// GETs `path_and_query` from the Nimbus API at `endpoint`; the body on 200, else the
    /// server's error message.
    pub async fn api_get(&self, endpoint: &str, path_and_query: &str) -> anyhow::Result<Vec<u8>> {
        if !endpoint.starts_with("http://") {
            bail!("--endpoint {endpoint:?}: only http:// endpoints are supported");
        }
        let url = format!("{}{path_and_query}", endpoint.trim_end_matches('/'));
        let resp = self
            .send_api("GET", &url, &[("accept", "application/json")], empty_body(), &payload_hash(b""))
            .await
            .with_context(|| format!("connecting to {endpoint} (is `nimbus server` running?)"))?;
        let status = resp.status;
        let body = resp.bytes().await?;
        if status != 200 {
            bail!("{endpoint} answered {status}: {}", error_message(&body));
        }
        Ok(body)
    }
}

/// An AWS JSON error's message (`message` / `Message`), else the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message").or_else(|| v.get("Message")).and_then(|m| m.as_str()).map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn credentials_from_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            env_credentials(move |k| m.get(k).cloned())
        };
        assert!(env(&[]).is_none());
        assert!(env(&[("AWS_ACCESS_KEY_ID", "K")]).is_none(), "both keys or none");
        let c = env(&[("AWS_ACCESS_KEY_ID", "K"), ("AWS_SECRET_ACCESS_KEY", "S")]).unwrap();
        assert_eq!((c.region.as_str(), c.session_token), ("us-east-1", None));
        let c = env(&[
            ("AWS_ACCESS_KEY_ID", "K"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_SESSION_TOKEN", "T"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-north-1"),
        ])
        .unwrap();
        assert_eq!((c.region.as_str(), c.session_token.as_deref()), ("eu-north-1", Some("T")));
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(br#"{"message":"no"}"#), "no");
        assert_eq!(error_message(br#"{"Message":"No"}"#), "No");
        assert_eq!(error_message(b"plain"), "plain");
    }
}
