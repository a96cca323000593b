//! Strict JSON reading: like `serde_json::from_str::<Value>`, but a duplicate object key
//! is an error (AWS rejects definitions with duplicate fields; serde_json would silently
//! keep the last one).

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `text` as JSON, refusing duplicate keys. The error names the duplicate key
/// and its JSON pointer location, plus serde_json's line/column.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Seed { pointer: String::new() }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Deserialises one value at `pointer` (the location, used in duplicate-key messages).
struct Seed {
    pointer: String,
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let pointer = format!("{}[{}]", self.pointer, out.len());
            match seq.next_element_seed(Seed { pointer })? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let at = if self.pointer.is_empty() { "/".to_string() } else { self.pointer.clone() };
                return Err(de::Error::custom(format!("Duplicate field '{key}' at {at}")));
            }
            let pointer = format!("{}/{}", self.pointer, key);
            let value = map.next_value_seed(Seed { pointer })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json() {
        let v = parse(r#"{"a":[1,2,{"b":null}],"c":1.5}"#).unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["c"], 1.5);
    }

    #[test]
    fn rejects_duplicate_keys_with_location() {
        let err = parse(r#"{"States":{"A":{"Type":"Pass","Type":"Task"}}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Duplicate field 'Type' at /States/A"), "{msg}");
    }

    #[test]
    fn rejects_trailing_garbage() {
        assert!(parse("{} x").is_err());
    }
}
