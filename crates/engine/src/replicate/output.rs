//! A prediction's output image, fetched once it succeeded: Replicate deletes outputs after an
//! hour, so the bytes are kept (bounded, type-checked) rather than the URL alone.

use std::time::Duration;

/// Largest output kept; Telegram takes photos up to 10 MB and documents up to 50 MB.
pub const MAX_OUTPUT_BYTES: usize = 20 * 1024 * 1024;

/// Longest one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// An output image's bytes and what they are.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputImage {
    pub bytes: Vec<u8>,
    pub kind: ImageKind,
}

impl std::fmt::Debug for OutputImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputImage")
            .field("kind", &self.kind)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl From<OutputImage> for genbot_store::JobImage {
    /// The output as the job keeps it: its bytes, named by their type.
    fn from(image: OutputImage) -> Self {
        genbot_store::JobImage {
            file_name: image.kind.file_name().to_owned(),
            bytes: image.bytes,
        }
    }
}

/// The image types kept and sent; anything else (an HTML error page, say) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// The type by the file's first bytes (its magic number), not by what the server claims.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageKind::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else {
            None
        }
    }

    /// A file name with the type's extension, for uploads.
    pub fn file_name(self) -> &'static str {
        match self {
            ImageKind::Png => "image.png",
            ImageKind::Jpeg => "image.jpg",
            ImageKind::Webp => "image.webp",
        }
    }
}

/// Why an output could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading the output failed: {0}")]
    Network(String),
    #[error("the output is larger than {MAX_OUTPUT_BYTES} bytes")]
    TooLarge,
    #[error("the output is not a PNG, JPEG or WebP image")]
    NotAnImage,
}

/// Fetches `url` without credentials (output URLs are public, and often on another host than
/// the API: the token must not travel there), at most [`MAX_OUTPUT_BYTES`].
///
/// # Errors
/// Network failures and error statuses, a body over the bound, bytes that are no image.
pub async fn download(http: &reqwest::Client, url: &str) -> Result<OutputImage, DownloadError> {
    let network = |e: reqwest::Error| DownloadError::Network(e.without_url().to_string());
    let mut response = http
        .get(url)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(network)?;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_OUTPUT_BYTES as u64)
    {
        return Err(DownloadError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if bytes.len() + chunk.len() > MAX_OUTPUT_BYTES {
            return Err(DownloadError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    let kind = ImageKind::sniff(&bytes).ok_or(DownloadError::NotAnImage)?;
    Ok(OutputImage { bytes, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_first_bytes() {
        assert_eq!(
            ImageKind::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageKind::Png)
        );
        assert_eq!(
            ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"<html>not found</html>"), None);
    }
}
