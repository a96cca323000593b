//! Task-level CPU/memory strings and Fargate's allowed combinations (pure).
use crate::error::Error;

/// "256", "0.25 vCPU", "1 vcpu" → CPU units (1 vCPU = 1,024 units).
pub fn parse_cpu(raw: &str) -> Result<u32, Error> {
    let bad = || Error::client("Invalid 'cpu' setting for task.");
    let s = raw.trim().to_ascii_lowercase();
    if let Some(v) = s.strip_suffix("vcpu") {
        let v: f64 = v.trim().parse().map_err(|_| bad())?;
        if v.is_nan() || v <= 0.0 {
            return Err(bad());
        }
        return Ok((v * 1024.0).round() as u32);
    }
    let v: u32 = s.parse().map_err(|_| bad())?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// "512", "1 GB", "1gb", "512 MiB" → MiB.
pub fn parse_memory(raw: &str) -> Result<u64, Error> {
    let bad = || Error::client("Invalid 'memory' setting for task.");
    let s = raw.trim().to_ascii_lowercase();
    for (suffix, factor) in [("gib", 1024.0), ("gb", 1024.0), ("mib", 1.0), ("mb", 1.0)] {
        if let Some(v) = s.strip_suffix(suffix) {
            let v: f64 = v.trim().parse().map_err(|_| bad())?;
            if v.is_nan() || v <= 0.0 {
                return Err(bad());
            }
            return Ok((v * factor).round() as u64);
        }
    }
    let v: u64 = s.parse().map_err(|_| bad())?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// The memory sizes (MiB) Fargate offers for a task CPU size; empty when the CPU is not one.
pub fn fargate_memory_options(cpu: u32) -> Vec<u64> {
    let range = |lo: u64, hi: u64, step: u64| (lo..=hi).step_by(step as usize).collect::<Vec<_>>();
    match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => Vec::new(),
    }
}

/// AWS's answer to a task size Fargate has no configuration for.
pub fn validate_fargate_size(cpu: u32, memory: u64) -> Result<(), Error> {
    if fargate_memory_options(cpu).contains(&memory) {
        Ok(())
    } else {
        Err(Error::client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_strings() {
        assert_eq!(parse_cpu("256").unwrap(), 256);
        assert_eq!(parse_cpu("0.25 vCPU").unwrap(), 256);
        assert_eq!(parse_cpu("1 vcpu").unwrap(), 1024);
        assert_eq!(parse_cpu("2vCPU").unwrap(), 2048);
        assert!(parse_cpu("lots").is_err());
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("1 GB").unwrap(), 1024);
        assert_eq!(parse_memory("0.5GB").unwrap(), 512);
        assert_eq!(parse_memory("2gb").unwrap(), 2048);
        assert!(parse_memory("-1").is_err());
    }

    #[test]
    fn fargate_combinations() {
        assert!(validate_fargate_size(256, 512).is_ok());
        assert!(validate_fargate_size(256, 2048).is_ok());
        assert!(validate_fargate_size(256, 4096).is_err());
        assert!(validate_fargate_size(512, 3072).is_ok());
        assert!(validate_fargate_size(512, 512).is_err());
        assert!(validate_fargate_size(1024, 8192).is_ok());
        assert!(validate_fargate_size(2048, 16384).is_ok());
        assert!(validate_fargate_size(4096, 30720).is_ok());
        assert!(validate_fargate_size(4096, 31744).is_err());
        assert!(validate_fargate_size(8192, 20480).is_ok());
        assert!(validate_fargate_size(8192, 17408).is_err());
        assert!(validate_fargate_size(16384, 122880).is_ok());
        assert!(validate_fargate_size(16384, 36864).is_err());
        assert!(validate_fargate_size(300, 1024).is_err());
        let msg = validate_fargate_size(256, 4096).unwrap_err().to_string();
        assert!(msg.starts_with("No Fargate configuration exists for given values"), "{msg}");
    }
}
