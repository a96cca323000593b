//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) parsing and verification for
//! incoming requests.
//!
//! Two request styles are supported:
//!
//! * **Header** — `Authorization: AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request,
//!   SignedHeaders=host;x-amz-date, Signature=<hex>` with the request time in
//!   `X-Amz-Date` (or, failing that, an RFC 1123 `Date` header).
//! * **Presigned** — `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//!   `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` (and optionally
//!   `X-Amz-Security-Token`) in the query string.
//!
//! [`parse`] extracts what the caller claims; [`verify`] rebuilds the canonical
//! request exactly as botocore / the AWS SDKs do for **non-S3** services and
//! checks the signature (constant time) and the clock. In particular the
//! canonical URI is the *raw* request path with `.`/`..`/empty segments
//! removed and then percent-encoded **again** (so `arn%3Aaws` is signed as
//! `arn%253Aaws`), which is what every SDK does for non-S3 services.
//!
//! Not handled here (the caller's job): looking up the secret for the access
//! key, checking that the credential scope's region/service match the
//! endpoint, validating session tokens, and S3-specific rules (no path
//! normalisation, streaming chunk signatures).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm we accept.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload-hash placeholder for unsigned bodies.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Allowed clock skew for header-signed requests (and presigned start time).
const MAX_SKEW: i64 = 15 * 60;
/// Longest presigned-URL lifetime AWS allows (7 days).
const MAX_PRESIGN_EXPIRES: u64 = 604_800;
/// `X-Amz-Date` format: ISO 8601 basic.
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// RFC 3986 unreserved characters are left alone; everything else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Like [`UNRESERVED`] but keeps `/` (Python's `quote(path, safe='/~')`).
const PATH_SAFE: &AsciiSet = &UNRESERVED.remove(b'/');

/// What the Authorization header (or presigned query) says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    /// `yyyymmdd`
    pub date: String,
    pub region: String,
    pub service: String,
}

/// Where the signature was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization` header.
    Header,
    /// `X-Amz-*` query parameters (presigned URL).
    Presigned,
}

/// A parsed (not yet verified) SigV4 authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    pub credential: Credential,
    /// Signed header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// Hex signature as supplied.
    pub signature: String,
    /// `yyyymmddThhmmssZ`
    pub amz_date: String,
    /// `X-Amz-Expires` (presigned only).
    pub expires_secs: Option<u64>,
    pub style: AuthStyle,
    /// `X-Amz-Security-Token` (header or query), if any.
    pub session_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    /// no Authorization header and no X-Amz-Algorithm query
    #[error("Missing Authentication Token")]
    Missing,
    /// malformed header/credential (message like AWS's IncompleteSignatureException text)
    #[error("{0}")]
    Incomplete(String),
    /// signature mismatch
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// date outside ±15 minutes (header) or presigned URL expired
    #[error("{0}")]
    Expired(String),
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Parse from the request parts. `query` is the raw query string (no '?'),
/// headers as given by [`http::HeaderMap`]. Returns `Ok(None)` when the
/// request carries no SigV4 authentication at all.
pub fn parse(headers: &http::HeaderMap, query: &str) -> Result<Option<ParsedAuth>, SigV4Error> {
    let params = decode_query(query);
    let presigned = params.iter().any(|(k, _)| k == "X-Amz-Algorithm");
    match (headers.get(http::header::AUTHORIZATION), presigned) {
        (None, false) => Ok(None),
        (Some(_), true) => Err(SigV4Error::Incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified".to_owned(),
        )),
        (Some(value), false) => parse_header(value, headers).map(Some),
        (None, true) => parse_presigned(&params, headers).map(Some),
    }
}

fn parse_header(value: &http::HeaderValue, headers: &http::HeaderMap) -> Result<ParsedAuth, SigV4Error> {
    let raw = value
        .to_str()
        .map_err(|_| SigV4Error::Incomplete("Authorization header contains invalid characters".to_owned()))?
        .trim();
    let (algorithm, rest) = match raw.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((a, r)) => (a, r.trim()),
        None => (raw, ""),
    };
    if algorithm != ALGORITHM {
        return Err(SigV4Error::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Authorization={raw}"
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(SigV4Error::Incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{raw}'."
            )));
        };
        let val = val.trim();
        match key.trim() {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }

    let amz_date = header_amz_date(headers)?;
    let mut missing = String::new();
    if credential.is_none() {
        missing.push_str("Authorization header requires 'Credential' parameter. ");
    }
    if signature.is_none() {
        missing.push_str("Authorization header requires 'Signature' parameter. ");
    }
    if signed_headers.is_none() {
        missing.push_str("Authorization header requires 'SignedHeaders' parameter. ");
    }
    if amz_date.is_none() {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(SigV4Error::Incomplete(format!("{missing}Authorization={raw}")));
    };

    let credential = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let signature = parse_signature(signature)?;
    check_date(&amz_date)?;
    check_scope_date(&credential, &amz_date)?;
    let session_token = header_str(headers, "x-amz-security-token");

    Ok(ParsedAuth {
        credential,
        signed_headers,
        signature,
        amz_date,
        expires_secs: None,
        style: AuthStyle::Header,
        session_token,
    })
}

fn parse_presigned(params: &[(String, String)], headers: &http::HeaderMap) -> Result<ParsedAuth, SigV4Error> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    let algorithm = get("X-Amz-Algorithm").unwrap_or_default();
    if algorithm != ALGORITHM {
        return Err(SigV4Error::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. X-Amz-Algorithm only supports \"{ALGORITHM}\""
        )));
    }
    let (Some(credential), Some(amz_date), Some(signed_headers), Some(signature)) =
        (get("X-Amz-Credential"), get("X-Amz-Date"), get("X-Amz-SignedHeaders"), get("X-Amz-Signature"))
    else {
        return Err(SigV4Error::Incomplete(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.".to_owned(),
        ));
    };

    let expires_secs = match get("X-Amz-Expires") {
        None => None,
        Some(v) => {
            let secs: u64 = v.parse().map_err(|_| {
                SigV4Error::Incomplete(format!("X-Amz-Expires should be a number, got '{v}'"))
            })?;
            if secs > MAX_PRESIGN_EXPIRES {
                return Err(SigV4Error::Incomplete(format!(
                    "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGN_EXPIRES}"
                )));
            }
            Some(secs)
        }
    };

    let credential = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let signature = parse_signature(signature)?;
    check_date(amz_date)?;
    check_scope_date(&credential, amz_date)?;
    let session_token = get("X-Amz-Security-Token")
        .map(str::to_owned)
        .or_else(|| header_str(headers, "x-amz-security-token"));

    Ok(ParsedAuth {
        credential,
        signed_headers,
        signature,
        amz_date: amz_date.to_owned(),
        expires_secs,
        style: AuthStyle::Presigned,
        session_token,
    })
}

/// `AKID/yyyymmdd/region/service/aws4_request`
fn parse_credential(raw: &str) -> Result<Credential, SigV4Error> {
    let parts: Vec<&str> = raw.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts.as_slice() else {
        return Err(SigV4Error::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{raw}'"
        )));
    };
    if access_key_id.is_empty() {
        return Err(SigV4Error::Incomplete(format!("Credential must include an access key id, got '{raw}'")));
    }
    if NaiveDateTime::parse_from_str(&format!("{date}T000000Z"), AMZ_DATE_FORMAT).is_err() || date.len() != 8
    {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid date (yyyymmdd), not '{date}'. "
        )));
    }
    if region.is_empty() {
        return Err(SigV4Error::Incomplete("Credential should be scoped to a valid region. ".to_owned()));
    }
    if service.is_empty() {
        return Err(SigV4Error::Incomplete("Credential should be scoped to a valid service. ".to_owned()));
    }
    if *terminator != "aws4_request" {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    Ok(Credential {
        access_key_id: (*access_key_id).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
    })
}

fn parse_signed_headers(raw: &str) -> Result<Vec<String>, SigV4Error> {
    let names: Vec<String> = raw.split(';').map(str::to_owned).collect();
    if names.iter().any(|n| n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == ':')) {
        return Err(SigV4Error::Incomplete(format!("SignedHeaders is malformed: '{raw}'")));
    }
    Ok(names)
}

fn parse_signature(raw: &str) -> Result<String, SigV4Error> {
    if raw.is_empty() {
        return Err(SigV4Error::Incomplete("Signature must not be empty".to_owned()));
    }
    Ok(raw.to_owned())
}

/// The request time for header-style auth: `X-Amz-Date`, else `Date`
/// (converted to the basic ISO 8601 form that was signed).
fn header_amz_date(headers: &http::HeaderMap) -> Result<Option<String>, SigV4Error> {
    if let Some(v) = header_str(headers, "x-amz-date") {
        return Ok(Some(v.trim().to_owned()));
    }
    let Some(date) = header_str(headers, "date") else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc2822(date.trim())
        .map_err(|_| SigV4Error::Incomplete(format!("Date header is not a valid RFC 1123 date: '{date}'")))?;
    Ok(Some(parsed.with_timezone(&Utc).format(AMZ_DATE_FORMAT).to_string()))
}

fn parse_amz_date(amz_date: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(amz_date, AMZ_DATE_FORMAT).ok().map(|n| n.and_utc())
}

fn check_date(amz_date: &str) -> Result<(), SigV4Error> {
    // `%Y` would also accept e.g. 5-digit years; insist on the exact shape.
    if amz_date.len() != 16 || parse_amz_date(amz_date).is_none() {
        return Err(SigV4Error::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    }
    Ok(())
}

fn check_scope_date(credential: &Credential, amz_date: &str) -> Result<(), SigV4Error> {
    let day = amz_date.get(..8).unwrap_or_default();
    if credential.date != day {
        return Err(SigV4Error::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{amz_date}'.",
            credential.date
        )));
    }
    Ok(())
}

fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Split a raw query into percent-decoded `(key, value)` pairs (lossy UTF-8).
fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Verify: recompute the signature with `secret` and compare in constant
/// time, then check the clock (±15 min for header style; for presigned,
/// from 15 min before `X-Amz-Date` until `X-Amz-Date + X-Amz-Expires`).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    auth: &ParsedAuth,
    method: &str,
    raw_path: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    secret: &str,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let presigned = auth.style == AuthStyle::Presigned;
    let prefix = canonical_request_prefix(auth, method, raw_path, query, headers, presigned);

    // Payload hash: an explicit x-amz-content-sha256 always wins (botocore
    // uses it verbatim, signed or not). Otherwise the body's SHA-256 — which is
    // also what botocore's SigV4QueryAuth signs for non-S3 presigned URLs; S3
    // style presigners use UNSIGNED-PAYLOAD, so accept that as a fallback.
    let mut payload_hashes = Vec::with_capacity(2);
    match header_str(headers, "x-amz-content-sha256") {
        // A hex hash must be the body's: otherwise a signed request's body could be swapped
        // while its signature still verifies. (UNSIGNED-PAYLOAD and STREAMING-… values
        // leave the body out of the signature on purpose.)
        Some(h)
            if is_hex_sha256(h.trim())
                && !h.trim().eq_ignore_ascii_case(&hex::encode(Sha256::digest(body))) =>
        {
            return Err(SigV4Error::Mismatch);
        }
        Some(h) => payload_hashes.push(h.trim().to_owned()),
        None => {
            payload_hashes.push(hex::encode(Sha256::digest(body)));
            if presigned {
                payload_hashes.push(UNSIGNED_PAYLOAD.to_owned());
            }
        }
    }

    let provided = hex::decode(&auth.signature).map_err(|_| SigV4Error::Mismatch)?;
    let key = signing_key(secret, &auth.credential);
    let mut matched = false;
    for payload_hash in &payload_hashes {
        let canonical = format!("{prefix}{payload_hash}");
        let sts = string_to_sign(auth, &canonical);
        let mut mac = new_mac(&key);
        mac.update(sts.as_bytes());
        // `verify_slice` compares in constant time.
        matched |= mac.verify_slice(&provided).is_ok();
    }
    if !matched {
        return Err(SigV4Error::Mismatch);
    }
    check_clock(auth, now)
}

fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_clock(auth: &ParsedAuth, now: DateTime<Utc>) -> Result<(), SigV4Error> {
    let Some(signed_at) = parse_amz_date(&auth.amz_date) else {
        return Err(SigV4Error::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'.",
            auth.amz_date
        )));
    };
    let fmt = |t: DateTime<Utc>| t.format(AMZ_DATE_FORMAT).to_string();
    let skew = Duration::seconds(MAX_SKEW);
    if signed_at > now + skew {
        return Err(SigV4Error::Expired(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            auth.amz_date,
            fmt(now + skew),
            fmt(now)
        )));
    }
    match (auth.style, auth.expires_secs) {
        (AuthStyle::Presigned, Some(expires)) => {
            // Clamped at parse time, but ParsedAuth is a plain struct.
            let expires = expires.min(MAX_PRESIGN_EXPIRES);
            let lifetime = Duration::seconds(i64::try_from(expires).unwrap_or(0));
            if now > signed_at + lifetime {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - {} sec.)",
                    auth.amz_date,
                    fmt(now - lifetime),
                    fmt(now),
                    expires
                )));
            }
        }
        _ => {
            if signed_at < now - skew {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                    auth.amz_date,
                    fmt(now - skew),
                    fmt(now)
                )));
            }
        }
    }
    Ok(())
}

/// Everything in the canonical request up to (not including) the payload hash.
fn canonical_request_prefix(
    auth: &ParsedAuth,
    method: &str,
    raw_path: &str,
    query: &str,
    headers: &http::HeaderMap,
    presigned: bool,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(&canonical_uri(raw_path));
    out.push('\n');
    out.push_str(&canonical_query(query, presigned));
    out.push('\n');
    for name in &auth.signed_headers {
        let lower = name.to_ascii_lowercase();
        out.push_str(&lower);
        out.push(':');
        let mut first = true;
        for value in headers.get_all(lower.as_str()) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&trim_all(&String::from_utf8_lossy(value.as_bytes())));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&auth.signed_headers.join(";"));
    out.push('\n');
    out
}

/// Non-S3 canonical URI, byte-for-byte what botocore computes:
/// `quote(remove_dot_segments(path), safe='/~')` on the raw (still
/// percent-encoded) path — so existing `%XX` escapes get encoded again.
fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in raw_path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = String::with_capacity(raw_path.len() + 2);
    if raw_path.starts_with('/') {
        path.push('/');
    }
    path.push_str(&segments.join("/"));
    if raw_path.ends_with('/') && !segments.is_empty() {
        path.push('/');
    }
    percent_encode(path.as_bytes(), PATH_SAFE).to_string()
}

/// Canonical query: each key and value percent-decoded then re-encoded with
/// the unreserved set, sorted by key then value, `k=v` joined by `&`.
/// Presigned requests leave out `X-Amz-Signature`.
fn canonical_query(query: &str, exclude_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k: Vec<u8> = percent_decode_str(k).collect();
            if exclude_signature && k == b"X-Amz-Signature" {
                return None;
            }
            let v: Vec<u8> = percent_decode_str(v).collect();
            Some((percent_encode(&k, UNRESERVED).to_string(), percent_encode(&v, UNRESERVED).to_string()))
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Trim and collapse runs of whitespace to one space (SigV4 "Trimall").
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn string_to_sign(auth: &ParsedAuth, canonical_request: &str) -> String {
    let c = &auth.credential;
    format!(
        "{ALGORITHM}\n{}\n{}/{}/{}/aws4_request\n{}",
        auth.amz_date,
        c.date,
        c.region,
        c.service,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never actually falls back.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")
fn signing_key(secret: &str, credential: &Credential) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), credential.date.as_bytes());
    let k_region = hmac(&k_date, credential.region.as_bytes());
    let k_service = hmac(&k_region, credential.service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

// ---------------------------------------------------------------------------
// Signing (clients: the `nimbus` CLI)
// ---------------------------------------------------------------------------

/// Who signs, and for what scope.
#[derive(Debug, Clone)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

/// Signs a request in header style, built from the same canonicalisation [`verify`] checks,
/// so the two cannot drift apart. Sets `X-Amz-Date` (and `X-Amz-Security-Token` with a
/// session token), signs every header then in `headers` (the caller puts `host` there, plus
/// `x-amz-content-sha256` if the payload hash should travel), and sets `Authorization`.
/// `payload_hash` is the hex SHA-256 of the body (or [`UNSIGNED_PAYLOAD`]).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    raw_path: &str,
    query: &str,
    headers: &mut http::HeaderMap,
    payload_hash: &str,
    creds: &SigningCredentials,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let invalid = |what: &str| SigV4Error::Incomplete(format!("invalid {what} for a header"));
    let amz_date = now.format(AMZ_DATE_FORMAT).to_string();
    headers.remove(http::header::AUTHORIZATION);
    headers.insert("x-amz-date", http::HeaderValue::from_str(&amz_date).map_err(|_| invalid("date"))?);
    if let Some(token) = &creds.session_token {
        headers.insert(
            "x-amz-security-token",
            http::HeaderValue::from_str(token).map_err(|_| invalid("session token"))?,
        );
    }
    let mut signed_headers: Vec<String> = headers.keys().map(|k| k.as_str().to_ascii_lowercase()).collect();
    signed_headers.sort_unstable();
    signed_headers.dedup();
    let auth = ParsedAuth {
        credential: Credential {
            access_key_id: creds.access_key_id.clone(),
            date: amz_date[..8].to_owned(),
            region: creds.region.clone(),
            service: creds.service.clone(),
        },
        signed_headers,
        signature: String::new(),
        amz_date,
        expires_secs: None,
        style: AuthStyle::Header,
        session_token: creds.session_token.clone(),
    };
    let prefix = canonical_request_prefix(&auth, method, raw_path, query, headers, false);
    let sts = string_to_sign(&auth, &format!("{prefix}{payload_hash}"));
    let signature =
        hex::encode(hmac(&signing_key(&creds.secret_access_key, &auth.credential), sts.as_bytes()));
    let c = &auth.credential;
    let value = format!(
        "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
        c.access_key_id,
        c.date,
        c.region,
        c.service,
        auth.signed_headers.join(";")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&value).map_err(|_| invalid("credential"))?,
    );
    Ok(())
}

#[cfg(test)]
mod sign_tests {
    use super::*;

    fn creds(service: &str, token: Option<&str>) -> SigningCredentials {
        SigningCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
            region: "us-east-1".into(),
            service: service.into(),
        }
    }

    #[test]
    fn reproduces_the_aws_suite_vanilla_get() {
        let mut h = http::HeaderMap::new();
        h.insert("host", http::HeaderValue::from_static("example.amazonaws.com"));
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let empty = hex::encode(Sha256::digest(b""));
        sign("GET", "/", "", &mut h, &empty, &creds("service", None), now).unwrap();
        assert_eq!(
            h["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn signed_requests_verify_and_tampering_does_not() {
        let body = b"{\"a\":1}";
        let hash = hex::encode(Sha256::digest(body));
        let mut h = http::HeaderMap::new();
        h.insert("host", http::HeaderValue::from_static("127.0.0.1:4566"));
        h.insert("x-amz-content-sha256", http::HeaderValue::from_str(&hash).unwrap());
        let now = Utc::now();
        let c = creds("nimbus", Some("TOKEN"));
        sign("POST", "/_nimbus/images/import", "tag=a%3Ab", &mut h, &hash, &c, now).unwrap();
        let auth = parse(&h, "tag=a%3Ab").unwrap().unwrap();
        assert_eq!(auth.session_token.as_deref(), Some("TOKEN"));
        verify(&auth, "POST", "/_nimbus/images/import", "tag=a%3Ab", &h, body, &c.secret_access_key, now)
            .unwrap();
        let wrong_query =
            verify(&auth, "POST", "/_nimbus/images/import", "tag=x", &h, body, &c.secret_access_key, now);
        assert!(matches!(wrong_query, Err(SigV4Error::Mismatch)));
        let wrong_key = verify(&auth, "POST", "/_nimbus/images/import", "tag=a%3Ab", &h, body, "nope", now);
        assert!(matches!(wrong_key, Err(SigV4Error::Mismatch)));
        // The signature covers the declared payload hash; a different body must not pass.
        let swapped = verify(
            &auth,
            "POST",
            "/_nimbus/images/import",
            "tag=a%3Ab",
            &h,
            b"{\"a\":2}",
            &c.secret_access_key,
            now,
        );
        assert!(matches!(swapped, Err(SigV4Error::Mismatch)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        map
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_amz_date(s).unwrap()
    }

    // ----- (1) AWS SigV4 test suite (2015-08-30 edition) -------------------

    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    struct SuiteCase {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        extra: &'static [(&'static str, &'static str)],
        body: &'static str,
        signed: &'static str,
        signature: &'static str,
    }

    const VANILLA_GET: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    const VANILLA_POST: &str = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
    const HD: &str = "host;x-amz-date";

    #[rustfmt::skip]
    const SUITE: &[SuiteCase] = &[
        SuiteCase { name: "get-vanilla", method: "GET", path: "/", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "get-vanilla-query", method: "GET", path: "/", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "get-vanilla-empty-query-key", method: "GET", path: "/", query: "Param1=value1", extra: &[], body: "", signed: HD, signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },
        SuiteCase { name: "get-vanilla-query-order-key-case", method: "GET", path: "/", query: "Param2=value2&Param1=value1", extra: &[], body: "", signed: HD, signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
        SuiteCase { name: "get-vanilla-query-unreserved", method: "GET", path: "/", query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", extra: &[], body: "", signed: HD, signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },
        SuiteCase { name: "get-vanilla-utf8-query", method: "GET", path: "/", query: "%E1%88%B4=bar", extra: &[], body: "", signed: HD, signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04" },
        SuiteCase { name: "get-unreserved", method: "GET", path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", query: "", extra: &[], body: "", signed: HD, signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
        // The suite's request line carries the literal (unencoded) character.
        SuiteCase { name: "get-utf8", method: "GET", path: "/\u{1234}", query: "", extra: &[], body: "", signed: HD, signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },
        SuiteCase { name: "get-header-key-duplicate", method: "GET", path: "/", query: "", extra: &[("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")], body: "", signed: "host;my-header1;x-amz-date", signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea" },
        SuiteCase { name: "get-header-value-order", method: "GET", path: "/", query: "", extra: &[("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2")], body: "", signed: "host;my-header1;x-amz-date", signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01" },
        SuiteCase { name: "get-header-value-trim", method: "GET", path: "/", query: "", extra: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")], body: "", signed: "host;my-header1;my-header2;x-amz-date", signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },
        SuiteCase { name: "normalize-path/get-relative", method: "GET", path: "/example/..", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "normalize-path/get-relative-relative", method: "GET", path: "/example1/example2/../..", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "normalize-path/get-slash", method: "GET", path: "//", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "normalize-path/get-slash-dot-slash", method: "GET", path: "/./", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_GET },
        SuiteCase { name: "post-vanilla", method: "POST", path: "/", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_POST },
        SuiteCase { name: "post-header-key-case", method: "POST", path: "/", query: "", extra: &[], body: "", signed: HD, signature: VANILLA_POST },
        SuiteCase { name: "post-sts-header-after", method: "POST", path: "/", query: "", extra: &[("X-Amz-Security-Token", SUITE_TOKEN)], body: "", signed: HD, signature: VANILLA_POST },
        SuiteCase { name: "post-sts-header-before", method: "POST", path: "/", query: "", extra: &[("X-Amz-Security-Token", SUITE_TOKEN)], body: "", signed: "host;x-amz-date;x-amz-security-token", signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" },
        SuiteCase { name: "post-header-key-sort", method: "POST", path: "/", query: "", extra: &[("My-Header1", "value1")], body: "", signed: "host;my-header1;x-amz-date", signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c" },
        SuiteCase { name: "post-header-value-case", method: "POST", path: "/", query: "", extra: &[("My-Header1", "VALUE1")], body: "", signed: "host;my-header1;x-amz-date", signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d" },
        SuiteCase { name: "post-vanilla-query", method: "POST", path: "/", query: "Param1=value1", extra: &[], body: "", signed: HD, signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11" },
        SuiteCase { name: "post-x-www-form-urlencoded", method: "POST", path: "/", query: "", extra: &[("Content-Type", "application/x-www-form-urlencoded")], body: "Param1=value1", signed: "content-type;host;x-amz-date", signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
        SuiteCase { name: "post-x-www-form-urlencoded-parameters", method: "POST", path: "/", query: "", extra: &[("Content-Type", "application/x-www-form-urlencoded; charset=utf8")], body: "Param1=value1", signed: "content-type;host;x-amz-date", signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe" },
    ];

    #[test]
    fn aws_test_suite() {
        for case in SUITE {
            let authz = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={}",
                case.signed, case.signature
            );
            let mut hs = vec![("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")];
            hs.extend_from_slice(case.extra);
            hs.push(("Authorization", authz.as_str()));
            let headers = header_map(&hs);
            let auth = parse(&headers, case.query).unwrap().unwrap();
            assert_eq!(auth.credential.access_key_id, "AKIDEXAMPLE", "{}", case.name);
            assert_eq!(auth.style, AuthStyle::Header);
            let r = verify(
                &auth,
                case.method,
                case.path,
                case.query,
                &headers,
                case.body.as_bytes(),
                SUITE_SECRET,
                at("20150830T123600Z"),
            );
            assert!(r.is_ok(), "{}: {r:?}", case.name);
            let bad = verify(
                &auth,
                case.method,
                case.path,
                case.query,
                &headers,
                b"x",
                "wrong",
                at("20150830T123600Z"),
            );
            assert!(matches!(bad, Err(SigV4Error::Mismatch)), "{}", case.name);
        }
    }

    #[test]
    fn suite_canonical_forms() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("//example//"), "/example/");
        assert_eq!(canonical_uri("/./example"), "/example");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/\u{1234}"), "/%E1%88%B4");
        // Already-encoded paths are encoded again (non-S3 rule).
        assert_eq!(
            canonical_uri(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations"
            ),
            "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A1%253Afunction%253Af/invocations"
        );
        assert_eq!(canonical_uri("/a/./b//c/../d%2Fe/"), "/a/b/d%252Fe/");
        assert_eq!(canonical_uri("/../.."), "/");
        assert_eq!(canonical_query("Param2=value2&Param1=value1", false), "Param1=value1&Param2=value2");
        assert_eq!(canonical_query("b=2&a=&a=1&c", false), "a=&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b+c%2a", false), "k=a%20b%2Bc%2A");
        assert_eq!(canonical_query("X-Amz-Signature=abc&X-Amz-Date=1", true), "X-Amz-Date=1");
        assert_eq!(trim_all("  a   b \t c  "), "a b c");
    }

    // ----- (2) vectors produced by real botocore 1.43.11 -------------------
    //
    // Generated by driving boto3 clients (and botocore.auth.SigV4Auth /
    // SigV4QueryAuth directly) with the clock pinned to 2024-05-17T10:11:12Z
    // and a before-send hook capturing the wire request. Unsigned SDK
    // bookkeeping headers (User-Agent, amz-sdk-*) are omitted.

    const BOTO_SECRET: &str = "nimbus/secret+KEY/0123456789abcdefEXAMPLE";
    const BOTO_NOW: &str = "20240517T101112Z";

    struct Vector {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body_hex: &'static str,
    }

    const BOTOCORE_VECTORS: &[Vector] = &[
        Vector {
            name: "lambda_get_function_arn",
            method: "GET",
            path: r#"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amy-func"#,
            query: r#""#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=2fb373f86a7685f55534d2c467f38c508a857b3975a0e3e6e0a49f6a296b40bf"#,
                ),
            ],
            body_hex: "",
        },
        Vector {
            name: "lambda_invoke_post",
            method: "POST",
            path: r#"/2015-03-31/functions/my-func/invocations"#,
            query: r#"Qualifier=%24LATEST"#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4983fab12a960cd0e49e5f6c7506a2bbab6011e1d05f2ee3314352bf9fb6b946"#,
                ),
                ("Content-Length", r#"36"#),
            ],
            body_hex: "7b2268656c6c6f223a2022775c7530306636726c64222c20226e223a205b312c20325d7d",
        },
        Vector {
            name: "lambda_list_query_special",
            method: "GET",
            path: r#"/2015-03-31/functions"#,
            query: r#"Marker=a%20b%2Fc%2Bd%3De%26f~g%2Ah%27%28%C3%BC%29&MaxItems=7&FunctionVersion=ALL"#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=b1480e5b570ef1645f6c9f08fafc8ff8447b428d07cf659b8c98a81ee8defd7d"#,
                ),
            ],
            body_hex: "",
        },
        Vector {
            name: "logs_json11_target",
            method: "POST",
            path: r#"/"#,
            query: r#""#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Target", r#"Logs_20140328.DescribeLogGroups"#),
                ("Content-Type", r#"application/x-amz-json-1.1"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/logs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=a4ab4e406e9f1ce70938c7462ddfb1f90d4b3c250c070d8e116720847c281219"#,
                ),
                ("Content-Length", r#"39"#),
            ],
            body_hex: "7b226c6f6747726f75704e616d65507265666978223a20222f6177732f6c616d6264612f78227d",
        },
        Vector {
            name: "ecs_https_session_token",
            method: "POST",
            path: r#"/"#,
            query: r#""#,
            headers: &[
                ("Host", r#"ecs.us-east-1.amazonaws.com"#),
                ("X-Amz-Target", r#"AmazonEC2ContainerServiceV20141113.ListClusters"#),
                ("Content-Type", r#"application/x-amz-json-1.1"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                ("X-Amz-Security-Token", r#"FQoGZXIvYXdzEXAMPLE//token+with/specials=="#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=bd314f91e531e2d113dc1a071f1beaa31d6c8b9043630ba154050d08ca7d1c5c"#,
                ),
                ("Content-Length", r#"2"#),
            ],
            body_hex: "7b7d",
        },
        Vector {
            name: "lambda_presigned_get",
            method: "GET",
            path: r#"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amy-func"#,
            query: r#"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDNIMBUSTEST%2F20240517%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20240517T101112Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=ab104da364bb221d93aa72a87fbe551a2d074064ec6af4c07f96d48d82326b0f"#,
            headers: &[("Host", r#"localhost:4566"#)],
            body_hex: "",
        },
        Vector {
            name: "lambda_presigned_query_token",
            method: "GET",
            path: r#"/2015-03-31/functions"#,
            query: r#"Marker=x%20y%2Fz&MaxItems=3&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDNIMBUSTEST%2F20240517%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20240517T101112Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE%2F%2Ftoken%2Bwith%2Fspecials%3D%3D&X-Amz-Signature=b8069fab62b826acc2b078cfc29fe8206bdc59c5c9367038fe160cc387c91dac"#,
            headers: &[("Host", r#"localhost:4566"#)],
            body_hex: "",
        },
        Vector {
            name: "direct_dot_segments",
            method: "GET",
            path: r#"/a/./b//c/../d%2Fe/"#,
            query: r#""#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Custom", r#"  v1   v2 "#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/eu-west-2/service/aws4_request, SignedHeaders=host;x-amz-date;x-custom, Signature=a26796085a71a0effc52882c3b3f2ad53f87724c2f7d21871e1eea218005007b"#,
                ),
            ],
            body_hex: "",
        },
        Vector {
            name: "direct_unsigned_payload",
            method: "PUT",
            path: r#"/up"#,
            query: r#""#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Content-SHA256", r#"UNSIGNED-PAYLOAD"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-west-2/service/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=12c89bc52a448dd72251e706114131705a08b8f19efc9189c4942f8dfcf265fc"#,
                ),
                ("Content-Length", r#"18"#),
            ],
            body_hex: "7061796c6f61642d6e6f742d686173686564",
        },
        Vector {
            name: "direct_query_in_url",
            method: "GET",
            path: r#"/q"#,
            query: r#"b=2&a=&a=1&c"#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("X-Amz-Date", r#"20240517T101112Z"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=168efcee44a86bbba9c35e61ef5da3fac38efb40236ef7654df50ddc6a95440d"#,
                ),
            ],
            body_hex: "",
        },
        Vector {
            name: "direct_date_header",
            method: "POST",
            path: r#"/"#,
            query: r#""#,
            headers: &[
                ("Host", r#"localhost:4566"#),
                ("Content-Type", r#"application/x-amz-json-1.0"#),
                ("X-Amz-Target", r#"Svc.Op"#),
                ("Date", r#"Fri, 17 May 2024 10:11:12 -0000"#),
                (
                    "Authorization",
                    r#"AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240517/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;date;host;x-amz-target, Signature=5ae835a3714eec3a4f01e69398d9fb2b2455adb543ce73977f155ba8f893046e"#,
                ),
                ("Content-Length", r#"7"#),
            ],
            body_hex: "7b2261223a317d",
        },
    ];

    struct Req {
        method: String,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Req {
        fn of(v: &Vector) -> Req {
            Req {
                method: v.method.to_owned(),
                path: v.path.to_owned(),
                query: v.query.to_owned(),
                headers: header_map(v.headers),
                body: hex::decode(v.body_hex).unwrap(),
            }
        }

        fn check(&self, secret: &str) -> Result<(), SigV4Error> {
            let auth = parse(&self.headers, &self.query)?.ok_or(SigV4Error::Missing)?;
            verify(
                &auth,
                &self.method,
                &self.path,
                &self.query,
                &self.headers,
                &self.body,
                secret,
                at(BOTO_NOW),
            )
        }
    }

    /// Flip the last character of a string to a different (still valid) one.
    fn tweak(s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        if let Some(last) = b.last_mut() {
            *last = if *last == b'x' { b'y' } else { b'x' };
        }
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn botocore_vectors_verify() {
        for v in BOTOCORE_VECTORS {
            let req = Req::of(v);
            assert!(req.check(BOTO_SECRET).is_ok(), "{}: {:?}", v.name, req.check(BOTO_SECRET));
        }
    }

    #[test]
    fn botocore_vectors_reject_tampering() {
        for v in BOTOCORE_VECTORS {
            let unsigned_body = v.headers.iter().any(|(_, val)| *val == UNSIGNED_PAYLOAD);

            // Body: one byte changed (or one byte added to an empty body).
            let mut req = Req::of(v);
            match req.body.first_mut() {
                Some(b) => *b ^= 0x01,
                None => req.body.push(b'x'),
            }
            let r = req.check(BOTO_SECRET);
            if unsigned_body {
                assert!(r.is_ok(), "{}: UNSIGNED-PAYLOAD must not cover the body", v.name);
            } else {
                assert!(matches!(r, Err(SigV4Error::Mismatch)), "{}: body tamper {r:?}", v.name);
            }

            // Path: last byte changed.
            let mut req = Req::of(v);
            req.path = if req.path == "/" { "/x".to_owned() } else { tweak(&req.path) };
            assert!(matches!(req.check(BOTO_SECRET), Err(SigV4Error::Mismatch)), "{}: path", v.name);

            // A signed header (Host is signed in every vector): last byte changed.
            let mut req = Req::of(v);
            let host = req.headers.get("host").unwrap().to_str().unwrap().to_owned();
            req.headers.insert("host", HeaderValue::from_str(&tweak(&host)).unwrap());
            assert!(matches!(req.check(BOTO_SECRET), Err(SigV4Error::Mismatch)), "{}: header", v.name);

            // Query: an extra parameter.
            let mut req = Req::of(v);
            req.query = if req.query.is_empty() { "x=1".to_owned() } else { format!("{}&x=1", req.query) };
            assert!(matches!(req.check(BOTO_SECRET), Err(SigV4Error::Mismatch)), "{}: query", v.name);

            // Method.
            let mut req = Req::of(v);
            req.method = if req.method == "GET" { "HEAD".to_owned() } else { "GET".to_owned() };
            assert!(matches!(req.check(BOTO_SECRET), Err(SigV4Error::Mismatch)), "{}: method", v.name);

            // Wrong secret.
            let req = Req::of(v);
            assert!(
                matches!(req.check(&tweak(BOTO_SECRET)), Err(SigV4Error::Mismatch)),
                "{}: secret",
                v.name
            );
        }
    }

    #[test]
    fn unsigned_headers_may_change() {
        let v = &BOTOCORE_VECTORS[1];
        let mut req = Req::of(v);
        req.headers.insert("user-agent", HeaderValue::from_static("something-else"));
        req.headers.insert("content-length", HeaderValue::from_static("9999"));
        assert!(req.check(BOTO_SECRET).is_ok());
    }

    #[test]
    fn botocore_parse_fields() {
        let req = Req::of(&BOTOCORE_VECTORS[4]); // ecs with session token
        let auth = parse(&req.headers, &req.query).unwrap().unwrap();
        assert_eq!(
            auth.credential,
            Credential {
                access_key_id: "AKIDNIMBUSTEST".into(),
                date: "20240517".into(),
                region: "us-east-1".into(),
                service: "ecs".into(),
            }
        );
        assert_eq!(
            auth.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target"]
        );
        assert_eq!(auth.amz_date, "20240517T101112Z");
        assert_eq!(auth.session_token.as_deref(), Some("FQoGZXIvYXdzEXAMPLE//token+with/specials=="));
        assert_eq!(auth.expires_secs, None);
        assert_eq!(auth.style, AuthStyle::Header);

        let req = Req::of(&BOTOCORE_VECTORS[6]); // presigned with token
        let auth = parse(&req.headers, &req.query).unwrap().unwrap();
        assert_eq!(auth.style, AuthStyle::Presigned);
        assert_eq!(auth.credential.service, "lambda");
        assert_eq!(auth.expires_secs, Some(3600));
        assert_eq!(auth.signed_headers, ["host"]);
        assert_eq!(auth.session_token.as_deref(), Some("FQoGZXIvYXdzEXAMPLE//token+with/specials=="));
        assert_eq!(auth.signature, "b8069fab62b826acc2b078cfc29fe8206bdc59c5c9367038fe160cc387c91dac");

        let req = Req::of(&BOTOCORE_VECTORS[10]); // Date header instead of X-Amz-Date
        let auth = parse(&req.headers, &req.query).unwrap().unwrap();
        assert_eq!(auth.amz_date, "20240517T101112Z");
    }

    #[test]
    fn unsigned_request_is_none() {
        let headers = header_map(&[("Host", "localhost"), ("X-Amz-Date", "20240517T101112Z")]);
        assert!(parse(&headers, "").unwrap().is_none());
        assert!(parse(&headers, "Action=ListUsers&X-Amz-Credential=foo").unwrap().is_none());
    }

    #[test]
    fn presigned_accepts_unsigned_payload_style() {
        // An S3-style presigner signs UNSIGNED-PAYLOAD instead of the body hash.
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240517%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20240517T101112Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host";
        let headers = header_map(&[("Host", "h")]);
        let mut auth = parse(&headers, &format!("{query}&X-Amz-Signature=00")).unwrap().unwrap();
        let prefix = canonical_request_prefix(&auth, "GET", "/p", query, &headers, true);
        let sts = string_to_sign(&auth, &format!("{prefix}{UNSIGNED_PAYLOAD}"));
        auth.signature = hex::encode(hmac(&signing_key("s", &auth.credential), sts.as_bytes()));
        let full = format!("{query}&X-Amz-Signature={}", auth.signature);
        assert!(verify(&auth, "GET", "/p", &full, &headers, b"", "s", at(BOTO_NOW)).is_ok());
        assert!(matches!(
            verify(&auth, "GET", "/p", &full, &headers, b"", "t", at(BOTO_NOW)),
            Err(SigV4Error::Mismatch)
        ));
    }

    // ----- (3) clock skew and presigned expiry ----------------------------

    fn suite_vanilla() -> (ParsedAuth, HeaderMap) {
        let headers = header_map(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ]);
        (parse(&headers, "").unwrap().unwrap(), headers)
    }

    #[test]
    fn header_clock_skew() {
        let (auth, headers) = suite_vanilla();
        let check = |now: DateTime<Utc>| verify(&auth, "GET", "/", "", &headers, b"", SUITE_SECRET, now);
        let t = at("20150830T123600Z");
        assert!(check(t).is_ok());
        assert!(check(t + Duration::minutes(15)).is_ok());
        assert!(check(t - Duration::minutes(15)).is_ok());

        match check(at("20150830T125600Z")) {
            Err(SigV4Error::Expired(m)) => assert_eq!(
                m,
                "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z (20150830T125600Z - 15 min.)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(t + Duration::seconds(15 * 60 + 1)), Err(SigV4Error::Expired(_))));
        match check(at("20150830T122000Z")) {
            Err(SigV4Error::Expired(m)) => assert_eq!(
                m,
                "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T122000Z + 15 min.)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(t - Duration::seconds(15 * 60 + 1)), Err(SigV4Error::Expired(_))));

        // A bad signature is reported as a mismatch even when also stale.
        let r = verify(&auth, "GET", "/", "", &headers, b"", "nope", at("20200101T000000Z"));
        assert!(matches!(r, Err(SigV4Error::Mismatch)));
    }

    #[test]
    fn presigned_expiry() {
        let v = &BOTOCORE_VECTORS[5]; // X-Amz-Expires=900
        let req = Req::of(v);
        let auth = parse(&req.headers, &req.query).unwrap().unwrap();
        assert_eq!(auth.expires_secs, Some(900));
        let check = |now: DateTime<Utc>| {
            verify(&auth, &req.method, &req.path, &req.query, &req.headers, &req.body, BOTO_SECRET, now)
        };
        let t = at(BOTO_NOW);
        assert!(check(t).is_ok());
        assert!(check(t + Duration::seconds(900)).is_ok());
        match check(t + Duration::seconds(901)) {
            Err(SigV4Error::Expired(m)) => assert_eq!(
                m,
                "Signature expired: 20240517T101112Z is now earlier than 20240517T101113Z (20240517T102613Z - 900 sec.)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(check(t - Duration::minutes(15)).is_ok());
        assert!(matches!(check(t - Duration::minutes(16)), Err(SigV4Error::Expired(_))));

        // Longer than a week is refused at parse time.
        let q = req.query.replace("X-Amz-Expires=900", "X-Amz-Expires=604801");
        assert!(matches!(parse(&req.headers, &q), Err(SigV4Error::Incomplete(_))));
        let q = req.query.replace("X-Amz-Expires=900", "X-Amz-Expires=604800");
        assert_eq!(parse(&req.headers, &q).unwrap().unwrap().expires_secs, Some(604_800));
        let q = req.query.replace("X-Amz-Expires=900", "X-Amz-Expires=-1");
        assert!(matches!(parse(&req.headers, &q), Err(SigV4Error::Incomplete(_))));
    }

    #[test]
    fn a_week_long_presign_at_the_edge() {
        let mut auth = suite_vanilla().0;
        auth.style = AuthStyle::Presigned;
        auth.expires_secs = Some(u64::MAX); // not reachable via parse; must not overflow
        assert!(matches!(check_clock(&auth, at("20150906T123601Z")), Err(SigV4Error::Expired(_))));
        assert!(check_clock(&auth, at("20150906T123600Z")).is_ok());
    }

    // ----- (4) malformed input --------------------------------------------

    fn parse_authz(authz: &[u8], extra: &[(&str, &str)]) -> Result<Option<ParsedAuth>, SigV4Error> {
        let mut headers = header_map(extra);
        headers.insert("authorization", HeaderValue::from_bytes(authz).unwrap());
        parse(&headers, "")
    }

    #[test]
    fn malformed_headers_are_incomplete() {
        let date = [("X-Amz-Date", "20150830T123600Z")];
        let good_cred = "Credential=AKID/20150830/us-east-1/service/aws4_request";
        let cases: Vec<String> = vec![
            "".into(),
            "AWS4-HMAC-SHA256".into(),
            "AWS4-HMAC-SHA256 ".into(),
            "Bearer abc".into(),
            "AWS AKID:c2lnbmF0dXJl".into(),
            "AWS4-HMAC-SHA512 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00".into(),
            format!("AWS4-HMAC-SHA256 {good_cred}"),
            format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders=host"),
            format!("AWS4-HMAC-SHA256 {good_cred}, Signature=00"),
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00".into(),
            format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders, Signature=00"),
            "AWS4-HMAC-SHA256 Credential=AKID, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request/x, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws5_request, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/2015083/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830//service/aws4_request, SignedHeaders=host, Signature=00".into(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1//aws4_request, SignedHeaders=host, Signature=00".into(),
            // scope date disagrees with X-Amz-Date
            "AWS4-HMAC-SHA256 Credential=AKID/20150831/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00".into(),
            format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders=host;;x-amz-date, Signature=00"),
            format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders=, Signature=00"),
            format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders=host, Signature="),
        ];
        for c in &cases {
            let r = parse_authz(c.as_bytes(), &date);
            assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{c:?} -> {r:?}");
        }

        let full = format!("AWS4-HMAC-SHA256 {good_cred}, SignedHeaders=host;x-amz-date, Signature=00");
        // No date header at all.
        match parse_authz(full.as_bytes(), &[]) {
            Err(SigV4Error::Incomplete(m)) => {
                assert!(m.contains("requires existence of either a 'X-Amz-Date' or a 'Date' header"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Missing parameters are all listed, AWS-style.
        match parse_authz(b"AWS4-HMAC-SHA256 Foo=bar", &date) {
            Err(SigV4Error::Incomplete(m)) => assert_eq!(
                m,
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Foo=bar"
            ),
            other => panic!("{other:?}"),
        }
        // Bad dates.
        for d in ["2015-08-30T12:36:00Z", "20150830T123600", "20151330T123600Z", "020150830T123600Z", ""] {
            let r = parse_authz(full.as_bytes(), &[("X-Amz-Date", d)]);
            assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{d:?} -> {r:?}");
        }
        let r = parse_authz(full.as_bytes(), &[("Date", "yesterday")]);
        assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{r:?}");
        // Non-UTF-8 / obs-text bytes.
        let r = parse_authz(b"AWS4-HMAC-SHA256 Credential=\xff\xfe/x", &date);
        assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{r:?}");
        // Sanity: the well-formed one parses.
        assert!(parse_authz(full.as_bytes(), &date).unwrap().is_some());
        // Spacing variations AWS tolerates.
        let tight = "AWS4-HMAC-SHA256   Credential=AKID/20150830/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date,Signature=00";
        assert!(parse_authz(tight.as_bytes(), &date).unwrap().is_some());
    }

    #[test]
    fn malformed_presigned_are_incomplete() {
        let headers = header_map(&[("Host", "h")]);
        let base = "X-Amz-Credential=AK%2F20240517%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20240517T101112Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        assert!(parse(&headers, &format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{base}")).unwrap().is_some());
        let cases = [
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA1&{base}"),
            format!("X-Amz-Algorithm=&{base}"),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_owned(),
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{}", base.replace("X-Amz-Signature=00", "")),
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&{}",
                base.replace("X-Amz-Date=20240517T101112Z", "X-Amz-Date=%ZZ")
            ),
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&{}",
                base.replace("X-Amz-Expires=60", "X-Amz-Expires=soon")
            ),
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{}", base.replace("%2Flambda%2F", "%2F")),
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{}", base.replace("20240517%2F", "20240518%2F")),
        ];
        for q in &cases {
            let r = parse(&headers, q);
            assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{q:?} -> {r:?}");
        }
        // Both mechanisms at once.
        let mut both = headers.clone();
        both.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"));
        let r = parse(&both, &format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{base}"));
        assert!(matches!(r, Err(SigV4Error::Incomplete(_))), "{r:?}");
    }

    #[test]
    fn no_panics_on_truncations_and_garbage() {
        let full = BOTOCORE_VECTORS[4].headers[5].1;
        let date = [("X-Amz-Date", "20240517T101112Z")];
        for i in 0..=full.len() {
            let _ = parse_authz(&full.as_bytes()[..i], &date);
        }
        let pq = BOTOCORE_VECTORS[6].query;
        let headers = header_map(&[("Host", "h")]);
        for i in 0..=pq.len() {
            if let Ok(Some(auth)) = parse(&headers, &pq[..i]) {
                let _ = verify(&auth, "GET", "/", &pq[..i], &headers, b"", "s", at(BOTO_NOW));
            }
        }
        // verify with a hand-built, nonsensical ParsedAuth must not panic either.
        let auth = ParsedAuth {
            credential: Credential {
                access_key_id: String::new(),
                date: "x".into(),
                region: String::new(),
                service: String::new(),
            },
            signed_headers: vec!["Bad Header".into(), "".into(), "x-\u{e9}".into()],
            signature: "00".into(),
            amz_date: "garbage".into(),
            expires_secs: Some(u64::MAX),
            style: AuthStyle::Presigned,
            session_token: None,
        };
        for path in ["", "/", "..", "/%", "%%%", "/\u{e9}/../..//./"] {
            for q in ["", "&&&", "=&=", "%", "a=%zz&%e9"] {
                let r = verify(&auth, "get", path, q, &headers, b"", "s", at(BOTO_NOW));
                assert!(matches!(r, Err(SigV4Error::Mismatch)));
            }
        }
    }
}
