//! ECS wiring: the containers engine over the shared image store (its `ImageProvider`), the
//! usage recorder (its `UsageSink`), and its service scheduler.
use nimbus_containers::{
    Config, EcsEngine, ImageDefaults, ImageFailure, ImageProvider, NodeCapacity, PreparedImage, TaskUsage,
    UsageSink,
};
use nimbus_images::{ImageError, ImageStore, RootfsView};
use nimbus_sandbox::{ImageRoot, Sandbox};
use nimbus_store::LogStore;
use nimbus_usage::{Recorder, TaskUsageRecord};
use std::path::Path;
use std::sync::Arc;

/// Task images come from the one image store (imports, registry pushes, ECR).
pub struct StoreImages(pub ImageStore);

impl ImageProvider for StoreImages {
    fn prepare(&self, reference: &str, dir: &Path) -> Result<PreparedImage, ImageFailure> {
        let image = self.0.resolve(reference).map_err(|e| match e {
            ImageError::NotFound(what) => ImageFailure::NotFound(what),
            other => ImageFailure::Failed(other.to_string()),
        })?;
        let root =
            match self.0.prepare_rootfs(&image, dir).map_err(|e| ImageFailure::Failed(e.to_string()))? {
                RootfsView::Overlay { lower, upper, work } => ImageRoot::Overlay { lower, upper, work },
                RootfsView::Dir(d) => ImageRoot::Dir(d),
            };
        let c = image.config;
        Ok(PreparedImage {
            digest: image.digest,
            root,
            defaults: ImageDefaults {
                entrypoint: c.entrypoint,
                cmd: c.cmd,
                env: c.env,
                working_dir: c.working_dir,
                user: c.user,
            },
        })
    }
}

/// Task usage → the usage recorder.
pub struct TaskUsageBridge(pub Recorder);

impl UsageSink for TaskUsageBridge {
    fn task_usage(&self, u: TaskUsage) {
        self.0.record_task_usage(TaskUsageRecord {
            cluster: u.cluster,
            service: u.service,
            task_arn: u.task_arn,
            family: u.family,
            launch_type: u.launch_type.to_string(),
            cpu_units: u.cpu_units,
            memory_mb: u.memory_mib,
            architecture: if std::env::consts::ARCH == "aarch64" { "arm64".into() } else { "x86_64".into() },
            gpu: 0,
            running_ms: u.running_ms,
            cpu_ms: u.cpu_ms,
            peak_memory_bytes: u.peak_memory_bytes,
            at_ms: u.at_ms.max(0) as u64,
        });
    }
}

/// Opens the ECS engine (reloading clusters, services and task history) and starts its
/// service scheduler.
pub fn open(
    data_dir: &Path,
    store: Arc<dyn nimbus_store::Store>,
    sandbox: Arc<dyn Sandbox>,
    images: &ImageStore,
    logs: Arc<LogStore>,
    recorder: Option<Recorder>,
) -> anyhow::Result<Arc<EcsEngine>> {
    let engine = EcsEngine::open(
        Config { data_dir: data_dir.to_path_buf(), node: NodeCapacity::detect() },
        store,
        sandbox,
        Arc::new(StoreImages(images.clone())),
        logs,
    )?;
    if let Some(r) = recorder {
        engine.set_usage_sink(Arc::new(TaskUsageBridge(r)));
    }
    engine.start_scheduler();
    Ok(engine)
}
