//! The AWS SDK for Python that AWS's python runtimes ship: functions `import boto3`
//! without packaging it. Installed once per machine into a shared cache with the host's
//! pip, in the background, atomically (a temporary directory renamed into place), so
//! many servers and data dirs share one copy.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns the directory holding `boto3`, installing it first if needed (blocking:
/// run it off the request path). `configure` may adjust the pip command (e.g. so it dies
/// with the server).
pub fn ensure(python: &Path, cache: &Path, configure: impl Fn(&mut Command)) -> Result<PathBuf, String> {
    let dir = cache.join("python-sdk");
    if dir.join("boto3").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    // One installer at a time per machine: many servers starting together (a test suite)
    // must not each run pip. The lock is released when its holder dies.
    let lock_file = std::fs::File::create(cache.join("python-sdk.lock")).map_err(|e| e.to_string())?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking the python SDK cache: {e}"))?;
    if dir.join("boto3").is_dir() {
        return Ok(dir);
    }
    let tmp = cache.join(format!("python-sdk.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--target"])
        .arg(&tmp)
        .arg("boto3")
        .stdin(std::process::Stdio::null());
    configure(&mut cmd);
    let out = cmd.output().map_err(|e| format!("running pip: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("pip install boto3 failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another server finished first: use its copy.
        Err(_) if dir.join("boto3").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e.to_string()),
    }
}
