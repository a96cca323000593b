//! AWS Lambda's documented quotas, in one place.

/// Synchronous invoke request and response payloads (6 MB).
pub const SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Asynchronous (`Event`) invoke payloads (256 KB).
pub const ASYNC_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest zip accepted directly in a CreateFunction/UpdateFunctionCode request (50 MB).
pub const ZIP_UPLOAD_BYTES: usize = 50 * 1024 * 1024;
/// Largest unzipped deployment package (250 MB).
pub const UNZIPPED_CODE_BYTES: u64 = 262_144_000;
pub const MEMORY_MB_MIN: u32 = 128;
pub const MEMORY_MB_MAX: u32 = 10_240;
pub const TIMEOUT_SECS_MIN: u32 = 1;
pub const TIMEOUT_SECS_MAX: u32 = 900;
pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const DEFAULT_TIMEOUT_SECS: u32 = 3;
pub const EPHEMERAL_MB_MIN: u32 = 512;
pub const EPHEMERAL_MB_MAX: u32 = 10_240;
/// Account-wide concurrent executions (default quota).
pub const DEFAULT_ACCOUNT_CONCURRENCY: usize = 1000;
/// Total size of all environment variables (4 KB).
pub const ENVIRONMENT_BYTES: usize = 4096;
/// `--log-type Tail` returns the last 4 KB of the invocation's log.
pub const LOG_TAIL_BYTES: usize = 4096;
/// Init phase limit for on-demand environments.
pub const INIT_TIMEOUT_SECS: u64 = 10;
/// Processes and threads one execution environment may run (Lambda: 1,024).
pub const PROCESSES_AND_THREADS: u64 = 1024;
