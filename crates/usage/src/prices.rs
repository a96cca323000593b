//! The price table: data, not code. The default (`prices/us-east-1-2026.json`) is compiled
//! in; `--prices FILE` replaces it. Every figure carries where it came from and whether it
//! was checked, so a reader can audit a projection down to its inputs.
use crate::UsageError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The table shipped with Nimbus.
pub const DEFAULT_PRICES_JSON: &str = include_str!("../prices/us-east-1-2026.json");

/// One figure with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub value: f64,
    /// The AWS pricing page the figure belongs to.
    pub source: String,
    /// Date the figure was taken (YYYY-MM-DD).
    pub as_of: String,
    /// Whether the figure was checked against a public page when the table was written.
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub version: String,
    pub date: String,
    pub region: String,
    pub currency: String,
    /// AWS's convention for monthly figures (365 × 24 / 12).
    pub hours_per_month: f64,
    #[serde(default)]
    pub notes: String,
    pub lambda: LambdaPrices,
    pub fargate: FargatePrices,
    pub ec2: Vec<Ec2InstanceType>,
    pub apigateway: ApiGatewayPrices,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaPrices {
    pub requests_per_million: Price,
    pub gb_second: ArchPrices,
    pub free_tier: LambdaFreeTier,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchPrices {
    pub x86_64: Price,
    pub arm64: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaFreeTier {
    pub requests: Price,
    pub gb_seconds: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FargatePrices {
    pub linux_x86_64: FargateRate,
    pub linux_arm64: FargateRate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FargateRate {
    pub vcpu_hour: Price,
    pub gb_hour: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ec2InstanceType {
    pub instance_type: String,
    pub vcpu: f64,
    pub memory_gib: f64,
    pub hourly: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiGatewayPrices {
    /// HTTP API request tiers in order; the last has no upper bound.
    pub http_api_per_million: Vec<PriceTier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTier {
    /// Cumulative monthly requests (millions) this tier covers; `None` for the last tier.
    pub up_to_millions: Option<f64>,
    pub price: Price,
}

impl PriceTable {
    /// The compiled-in table.
    pub fn default_table() -> PriceTable {
        // The embedded file is checked by a unit test, so this cannot fail at run time.
        match PriceTable::parse(DEFAULT_PRICES_JSON, "built-in price table") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// Parses and validates a table; `origin` names it in errors.
    pub fn parse(json: &str, origin: &str) -> Result<PriceTable, UsageError> {
        let table: PriceTable =
            serde_json::from_str(json).map_err(|e| UsageError::Prices(format!("{origin}: {e}")))?;
        table.validate().map_err(|e| UsageError::Prices(format!("{origin}: {e}")))?;
        Ok(table)
    }

    /// Reads an override file (`--prices FILE`).
    pub fn load(path: &Path) -> Result<PriceTable, UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::Prices(format!("{}: {e}", path.display())))?;
        PriceTable::parse(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), String> {
        if !self.hours_per_month.is_finite() || self.hours_per_month <= 0.0 {
            return Err("hours_per_month must be positive".into());
        }
        let mut figures: Vec<(&str, f64)> = vec![
            ("lambda.requests_per_million", self.lambda.requests_per_million.value),
            ("lambda.gb_second.x86_64", self.lambda.gb_second.x86_64.value),
            ("lambda.gb_second.arm64", self.lambda.gb_second.arm64.value),
            ("lambda.free_tier.requests", self.lambda.free_tier.requests.value),
            ("lambda.free_tier.gb_seconds", self.lambda.free_tier.gb_seconds.value),
            ("fargate.linux_x86_64.vcpu_hour", self.fargate.linux_x86_64.vcpu_hour.value),
            ("fargate.linux_x86_64.gb_hour", self.fargate.linux_x86_64.gb_hour.value),
            ("fargate.linux_arm64.vcpu_hour", self.fargate.linux_arm64.vcpu_hour.value),
            ("fargate.linux_arm64.gb_hour", self.fargate.linux_arm64.gb_hour.value),
        ];
        for t in &self.ec2 {
            figures.push(("ec2[].hourly", t.hourly.value));
            if !(t.vcpu > 0.0 && t.memory_gib > 0.0) {
                return Err(format!("ec2 {}: vcpu and memory_gib must be positive", t.instance_type));
            }
        }
        for t in &self.apigateway.http_api_per_million {
            figures.push(("apigateway.http_api_per_million[].price", t.price.value));
        }
        for (name, v) in figures {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a non-negative number, got {v}"));
            }
        }
        if self.ec2.is_empty() {
            return Err("ec2 must list at least one instance type".into());
        }
        match self.apigateway.http_api_per_million.last() {
            None => return Err("apigateway.http_api_per_million needs at least one tier".into()),
            Some(t) if t.up_to_millions.is_some() => {
                return Err("the last apigateway tier must have \"up_to_millions\": null".into());
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Lambda's duration price for an architecture (`arm64`, else x86_64).
    pub fn lambda_gb_second(&self, architecture: &str) -> f64 {
        if is_arm(architecture) {
            self.lambda.gb_second.arm64.value
        } else {
            self.lambda.gb_second.x86_64.value
        }
    }

    pub fn fargate_rate(&self, architecture: &str) -> &FargateRate {
        if is_arm(architecture) { &self.fargate.linux_arm64 } else { &self.fargate.linux_x86_64 }
    }

    /// HTTP API request charge for a month's requests, through the tiers.
    pub fn http_api_cost(&self, requests: f64) -> f64 {
        let mut remaining = requests.max(0.0) / 1e6;
        let mut floor = 0.0;
        let mut cost = 0.0;
        for tier in &self.apigateway.http_api_per_million {
            let span = match tier.up_to_millions {
                Some(cap) => (cap - floor).max(0.0),
                None => f64::INFINITY,
            };
            let here = remaining.min(span);
            cost += here * tier.price.value;
            remaining -= here;
            if let Some(cap) = tier.up_to_millions {
                floor = cap;
            }
            if remaining <= 0.0 {
                break;
            }
        }
        cost
    }
}

pub(crate) fn is_arm(architecture: &str) -> bool {
    architecture.eq_ignore_ascii_case("arm64") || architecture.eq_ignore_ascii_case("aarch64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses_with_the_documented_figures() {
        let t = PriceTable::default_table();
        assert_eq!(t.region, "us-east-1");
        assert_eq!(t.hours_per_month, 730.0);
        assert_eq!(t.lambda.requests_per_million.value, 0.20);
        assert_eq!(t.lambda_gb_second("x86_64"), 0.0000166667);
        assert_eq!(t.lambda_gb_second("arm64"), 0.0000133334);
        assert_eq!(t.lambda.free_tier.requests.value, 1_000_000.0);
        assert_eq!(t.lambda.free_tier.gb_seconds.value, 400_000.0);
        assert_eq!(t.fargate_rate("x86_64").vcpu_hour.value, 0.04048);
        assert_eq!(t.fargate_rate("x86_64").gb_hour.value, 0.004445);
        assert_eq!(t.fargate_rate("arm64").vcpu_hour.value, 0.03238);
        assert_eq!(t.fargate_rate("arm64").gb_hour.value, 0.00356);
        assert!(t.ec2.iter().any(|i| i.instance_type == "t3.micro" && i.hourly.value == 0.0104));
        assert_eq!(t.ec2.len(), 11);
        for p in t.ec2.iter().map(|i| &i.hourly) {
            assert!(p.source.starts_with("https://aws.amazon.com/"), "{p:?}");
            assert!(!p.as_of.is_empty());
        }
    }

    #[test]
    fn http_api_tiers() {
        let t = PriceTable::default_table();
        assert!((t.http_api_cost(1e6) - 1.0).abs() < 1e-9);
        assert!((t.http_api_cost(216e6) - 216.0).abs() < 1e-9);
        // 300M at $1.00 + 200M at $0.90
        assert!((t.http_api_cost(500e6) - 480.0).abs() < 1e-6);
        // 300 + 630 + 1000M × 0.80
        assert!((t.http_api_cost(2000e6) - (300.0 + 630.0 + 800.0)).abs() < 1e-6);
    }

    #[test]
    fn malformed_override_is_a_clear_error() {
        let e = PriceTable::parse("{\"version\": 1}", "my-prices.json").unwrap_err().to_string();
        assert!(e.contains("my-prices.json"), "{e}");
        assert!(e.contains("invalid type") || e.contains("missing field"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_PRICES_JSON).unwrap();
        v["lambda"]["gb_second"]["arm64"]["value"] = serde_json::json!(-1.0);
        let e = PriceTable::parse(&v.to_string(), "neg.json").unwrap_err().to_string();
        assert!(e.contains("lambda.gb_second.arm64"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = PriceTable::load(&dir.path().join("absent.json")).unwrap_err().to_string();
        assert!(e.contains("absent.json"), "{e}");
    }

    #[test]
    fn override_file_replaces_figures() {
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_PRICES_JSON).unwrap();
        v["version"] = serde_json::json!("custom");
        v["fargate"]["linux_x86_64"]["vcpu_hour"]["value"] = serde_json::json!(0.05);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let t = PriceTable::load(&path).unwrap();
        assert_eq!(t.version, "custom");
        assert_eq!(t.fargate_rate("x86_64").vcpu_hour.value, 0.05);
    }
}
