//! Container image functions (`PackageType=Image`): the image source the binary provides
//! (over its image store) and how an image's config becomes a runtime launch — ENTRYPOINT,
//! CMD, WORKDIR and ENV, with the function's `ImageConfig` overriding the first three.
use nimbus_model::FunctionImage;
use nimbus_sandbox::ImageRoot;
use std::path::Path;

/// How an image says it runs (from its config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` pairs, split.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    /// No image by that reference.
    #[error("image not found: {0}")]
    NotFound(String),
    /// The reference cannot name an image.
    #[error("invalid image reference: {0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Where image functions' images come from; the binary implements it over its image store.
pub trait ImageResolver: Send + Sync + 'static {
    /// The manifest digest (`sha256:…`) `image_uri` names now.
    fn resolve(&self, image_uri: &str) -> Result<String, ImageSourceError>;
    /// A private root filesystem for one execution environment, prepared under `env_dir`
    /// (its scratch directory, removed with the environment), and the image's defaults.
    fn rootfs_for(
        &self,
        image_uri: &str,
        env_dir: &Path,
    ) -> Result<(ImageRoot, ImageDefaults), ImageSourceError>;
}

/// `repo[:tag|@digest]` pinned to `digest` (Lambda's `ResolvedImageUri`).
pub(crate) fn pin(image_uri: &str, digest: &str) -> String {
    let repo = match image_uri.split_once('@') {
        Some((repo, _)) => repo,
        None => match image_uri.rfind(':') {
            // A colon after the last slash is a tag; before it, a registry port.
            Some(i) if image_uri[i..].find('/').is_none() => &image_uri[..i],
            _ => image_uri,
        },
    };
    format!("{repo}@{digest}")
}

/// What the runtime process of an image function is started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launch {
    pub argv: Vec<String>,
    pub cwd: String,
    /// `_HANDLER`: the (overridden) CMD's first word, as Lambda's runtime interface clients expect.
    pub handler: String,
}

/// ENTRYPOINT + CMD (each overridable on its own by `ImageConfig`), and the working directory.
pub(crate) fn launch(image: &FunctionImage, defaults: &ImageDefaults) -> Result<Launch, String> {
    let entrypoint = image.entry_point.clone().unwrap_or_else(|| defaults.entrypoint.clone());
    let cmd = image.command.clone().unwrap_or_else(|| defaults.cmd.clone());
    let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if argv.is_empty() || argv[0].is_empty() {
        return Err("the image has no ENTRYPOINT or CMD, and ImageConfig sets neither".into());
    }
    let cwd = image
        .working_directory
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| defaults.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    Ok(Launch { argv, cwd, handler: cmd.first().cloned().unwrap_or_default() })
}

/// Splits an image config's `K=V` list.
pub fn split_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_tags_and_digests_but_not_ports() {
        let d = "sha256:ab";
        assert_eq!(pin("localhost:4567/fn:v1", d), "localhost:4567/fn@sha256:ab");
        assert_eq!(pin("localhost:4567/fn", d), "localhost:4567/fn@sha256:ab");
        assert_eq!(pin("fn@sha256:00", d), "fn@sha256:ab");
        assert_eq!(
            pin("123456789012.dkr.ecr.us-east-1.amazonaws.com/a/b:latest", d),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/a/b@sha256:ab"
        );
    }

    #[test]
    fn image_config_overrides_entrypoint_cmd_and_workdir_separately() {
        let defaults = ImageDefaults {
            entrypoint: vec!["/lambda-entrypoint.sh".into()],
            cmd: vec!["app.handler".into()],
            env: vec![],
            working_dir: Some("/var/task".into()),
        };
        let plain = FunctionImage::default();
        let l = launch(&plain, &defaults).unwrap();
        assert_eq!(l.argv, ["/lambda-entrypoint.sh", "app.handler"]);
        assert_eq!((l.cwd.as_str(), l.handler.as_str()), ("/var/task", "app.handler"));
        let over = FunctionImage {
            command: Some(vec!["other.handler".into()]),
            working_directory: Some("/srv".into()),
            ..Default::default()
        };
        let l = launch(&over, &defaults).unwrap();
        assert_eq!(l.argv, ["/lambda-entrypoint.sh", "other.handler"]);
        assert_eq!((l.cwd.as_str(), l.handler.as_str()), ("/srv", "other.handler"));
        let ep = FunctionImage { entry_point: Some(vec!["/bin/app".into()]), ..Default::default() };
        assert_eq!(launch(&ep, &defaults).unwrap().argv, ["/bin/app", "app.handler"]);
        assert!(launch(&plain, &ImageDefaults::default()).is_err());
        assert_eq!(
            split_env(&["A=1=2".into(), "B".into()]),
            [("A".into(), "1=2".into()), ("B".into(), String::new())]
        );
    }
}
