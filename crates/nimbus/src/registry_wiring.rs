//! The image store and the ECR data plane: one `ImageStore` for the whole server (the
//! registry, ECR, ECS tasks and image functions share it) and the OCI registry on its own
//! listener (`/v2/…` would collide with API Gateway's `/v2/apis` on the main one).
use anyhow::Context;
use nimbus_images::ImageStore;
use nimbus_registry::{EcrEngine, RegistryAuth};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const DEFAULT_LISTEN: &str = "127.0.0.1:4567";

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RegistryAuthArg {
    /// Any credentials, or none.
    Anonymous,
    /// Basic `AWS:<token>` from `aws ecr get-login-password` required.
    Token,
}

#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Address of the OCI registry (ECR's data plane); port 0 picks a free one (printed).
    /// Default 127.0.0.1:4567; when that is taken (another server), a free port is used.
    #[arg(long, env = "NIMBUS_REGISTRY_LISTEN")]
    pub registry_listen: Option<SocketAddr>,
    /// `anonymous` accepts any client; `token` requires `docker/podman login` with an ECR token.
    #[arg(long, env = "NIMBUS_REGISTRY_AUTH", value_enum, default_value = "anonymous")]
    pub registry_auth: RegistryAuthArg,
}

/// The shared image store, the ECR engine, and the bound (not yet serving) registry listener.
pub struct Registry {
    pub images: ImageStore,
    pub ecr: Arc<EcrEngine>,
    pub url: String,
    listener: Option<tokio::net::TcpListener>,
    auth: RegistryAuth,
}

pub async fn open(
    args: &RegistryArgs,
    data_dir: &Path,
    store: Arc<dyn nimbus_store::Store>,
) -> anyhow::Result<Registry> {
    let images = ImageStore::open(data_dir, store.clone()).context("opening the image store")?;
    let ecr = EcrEngine::open(store, images.clone()).context("opening ECR")?;
    let listener = match args.registry_listen {
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the registry listener {addr}"))?,
        // The default port is a convenience, not a requirement: a second server on the
        // machine (tests, benchmarks) still starts, and prints where its registry is.
        None => match tokio::net::TcpListener::bind(DEFAULT_LISTEN).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("registry: {DEFAULT_LISTEN} unavailable ({e}); using a free port");
                tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the registry listener")?
            }
        },
    };
    let url = format!("http://{}", listener.local_addr()?);
    ecr.set_registry_endpoint(url.clone());
    let auth = match args.registry_auth {
        RegistryAuthArg::Anonymous => RegistryAuth::Anonymous,
        RegistryAuthArg::Token => RegistryAuth::Token,
    };
    Ok(Registry { images, ecr, url, listener: Some(listener), auth })
}

impl Registry {
    /// Starts serving and prints `registry listening on <url>` (tests read it, like the
    /// main listener's ready line).
    pub fn serve(&mut self) {
        let Some(listener) = self.listener.take() else { return };
        let app = nimbus_registry::router(self.ecr.clone(), self.auth);
        println!("registry listening on {}", self.url);
        tracing::info!("OCI registry (ECR data plane) on {}", self.url);
        tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("registry listener failed: {e}");
            }
        });
    }
}
