//! A user's picture as a model input: type-checked by its bytes and passed inline as a data
//! URL. Replicate takes data URLs for small files only, so pictures are bounded by
//! [`MAX_IMAGE_INPUT_BYTES`]; the Telegram front picks the largest photo size under it.

use base64::Engine as _;

use crate::replicate::output::ImageKind;

/// Largest picture passed as a data URL.
pub const MAX_IMAGE_INPUT_BYTES: usize = 256 * 1024;

/// Why a picture cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageInputError {
    #[error("the picture has {0} bytes; at most {MAX_IMAGE_INPUT_BYTES} are taken")]
    TooLarge(usize),
    #[error("the file is not a PNG, JPEG or WebP picture")]
    NotAnImage,
}

/// `bytes` as a `data:image/…;base64,…` URL.
///
/// # Errors
/// The bytes are too many or not a PNG, JPEG or WebP image.
pub fn data_url(bytes: &[u8]) -> Result<String, ImageInputError> {
    if bytes.len() > MAX_IMAGE_INPUT_BYTES {
        return Err(ImageInputError::TooLarge(bytes.len()));
    }
    let mime = match ImageKind::sniff(bytes).ok_or(ImageInputError::NotAnImage)? {
        ImageKind::Png => "image/png",
        ImageKind::Jpeg => "image/jpeg",
        ImageKind::Webp => "image/webp",
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!("data:{mime};base64,{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_become_data_urls_and_the_rest_is_refused() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        assert!(data_url(png)
            .unwrap()
            .starts_with("data:image/png;base64,iVBORw0KGg"));
        assert_eq!(data_url(b"<html>"), Err(ImageInputError::NotAnImage));
        let huge = vec![0xFF; MAX_IMAGE_INPUT_BYTES + 1];
        assert!(matches!(data_url(&huge), Err(ImageInputError::TooLarge(_))));
    }
}
