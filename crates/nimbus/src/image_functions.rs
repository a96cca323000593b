//! Container image functions (`PackageType=Image`): the functions engine's `ImageResolver`
//! over the image store the registry shares, so an `ImageUri` pushed to the registry or
//! imported with `nimbus image import` runs as a Lambda function.
use nimbus_functions::{FunctionsEngine, ImageDefaults, ImageResolver, ImageSourceError, split_image_env};
use nimbus_images::{ImageError, ImageStore, RootfsView};
use nimbus_sandbox::ImageRoot;
use std::path::Path;
use std::sync::Arc;

struct StoreImages(ImageStore);

fn source_error(e: ImageError) -> ImageSourceError {
    match e {
        ImageError::NotFound(r) => ImageSourceError::NotFound(r),
        ImageError::InvalidReference(r) => ImageSourceError::Invalid(r),
        other => ImageSourceError::Failed(other.to_string()),
    }
}

impl ImageResolver for StoreImages {
    fn resolve(&self, image_uri: &str) -> Result<String, ImageSourceError> {
        self.0.resolve(image_uri).map(|image| image.digest).map_err(source_error)
    }

    fn rootfs_for(
        &self,
        image_uri: &str,
        env_dir: &Path,
    ) -> Result<(ImageRoot, ImageDefaults), ImageSourceError> {
        let image = self.0.resolve(image_uri).map_err(source_error)?;
        let root = match self.0.prepare_rootfs(&image, env_dir).map_err(source_error)? {
            RootfsView::Overlay { lower, upper, work } => ImageRoot::Overlay { lower, upper, work },
            RootfsView::Dir(dir) => ImageRoot::Dir(dir),
        };
        let c = image.config;
        let defaults = ImageDefaults {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: split_image_env(&c.env),
            working_dir: c.working_dir,
        };
        Ok((root, defaults))
    }
}

/// Lets `functions` run image functions from `images`.
pub fn wire(functions: &FunctionsEngine, images: &ImageStore) {
    functions.set_image_resolver(Arc::new(StoreImages(images.clone())));
}
