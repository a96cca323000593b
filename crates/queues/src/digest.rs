//! The MD5 digests SQS returns with every message; SDKs recompute and compare them.
use crate::MessageAttributeValue;
use md5::{Digest, Md5};
use std::collections::BTreeMap;

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// `MD5OfMessageAttributes` as AWS computes it: attributes in name order, each as the
/// length-prefixed (4-byte big-endian) name and data type, a transport byte (1 string,
/// 2 binary) and the length-prefixed value. `None` when there are no attributes.
pub fn md5_of_message_attributes(attrs: &BTreeMap<String, MessageAttributeValue>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let mut h = Md5::new();
    let field = |h: &mut Md5, bytes: &[u8]| {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    };
    for (name, v) in attrs {
        field(&mut h, name.as_bytes());
        field(&mut h, v.data_type.as_bytes());
        match (&v.string_value, &v.binary_value) {
            (Some(s), _) => {
                h.update([1u8]);
                field(&mut h, s.as_bytes());
            }
            (None, Some(b)) => {
                h.update([2u8]);
                field(&mut h, b);
            }
            (None, None) => {}
        }
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_digest_is_plain_md5() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_digest_follows_the_aws_encoding() {
        let mut attrs = BTreeMap::new();
        assert_eq!(md5_of_message_attributes(&attrs), None);
        attrs.insert("b".to_string(), MessageAttributeValue::string("x"));
        attrs.insert(
            "a".to_string(),
            MessageAttributeValue {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(vec![1, 2]),
            },
        );
        // Built by hand: "a" first (sorted), binary transport type 2, then "b" as a string.
        let mut raw = Vec::new();
        for part in [&b"a"[..], b"Binary"] {
            raw.extend((part.len() as u32).to_be_bytes());
            raw.extend(part);
        }
        raw.push(2);
        raw.extend(2u32.to_be_bytes());
        raw.extend([1, 2]);
        for part in [&b"b"[..], b"String"] {
            raw.extend((part.len() as u32).to_be_bytes());
            raw.extend(part);
        }
        raw.push(1);
        raw.extend(1u32.to_be_bytes());
        raw.push(b'x');
        assert_eq!(md5_of_message_attributes(&attrs), Some(md5_hex(&raw)));
    }
}
