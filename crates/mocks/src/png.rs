//! The images the mocks serve: a valid 1×1 PNG, or a blank one of any size; and a PNG's size
//! as Telegram reads it.

/// A 1×1 transparent PNG (67 bytes).
pub(crate) const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

const SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Width and height from a PNG's header, or `None` when `bytes` is no PNG.
pub(crate) fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..8)? != SIGNATURE || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

/// A valid black PNG of `width` × `height` pixels (1-bit grayscale, stored uncompressed, so
/// no compressor is needed: a 2,100 × 100 image is 27 KB).
pub(crate) fn blank(width: u32, height: u32) -> Vec<u8> {
    let row = 1 + (width as usize).div_ceil(8);
    let raw = vec![0_u8; row * height as usize];
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 1, grayscale, deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut png = SIGNATURE.to_vec();
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// `data` as a zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(usize::from(u16::MAX)).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiny_png_and_a_blank_one_read_back_their_sizes() {
        assert_eq!(dimensions(TINY_PNG), Some((1, 1)));
        let wide = blank(2_100, 100);
        assert_eq!(dimensions(&wide), Some((2_100, 100)));
        assert_eq!(dimensions(b"GIF89a not a png at all"), None);
        assert_eq!(dimensions(&wide[..20]), None);
    }

    /// The checksums PNG readers verify, against their published check values.
    #[test]
    fn the_checksums_are_the_standard_ones() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        // The tiny PNG's own IHDR checksum, made by a real encoder.
        assert_eq!(
            crc32(&TINY_PNG[12..29]),
            u32::from_be_bytes([0x1f, 0x15, 0xc4, 0x89])
        );
    }

    proptest::proptest! {
        /// Whatever bytes an upload holds, reading its size never panics, and a PNG's header
        /// in front of anything reads back as written.
        #[test]
        fn any_upload_is_read_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            width in 1_u32..20_000,
            height in 1_u32..20_000,
        ) {
            let _ = dimensions(&bytes);
            let mut png = blank(1, 1)[..33].to_vec();
            png[16..20].copy_from_slice(&width.to_be_bytes());
            png[20..24].copy_from_slice(&height.to_be_bytes());
            png.extend_from_slice(&bytes);
            proptest::prop_assert_eq!(dimensions(&png), Some((width, height)));
        }
    }

    #[test]
    fn a_blank_png_is_well_formed() {
        let png = blank(17, 3);
        // IDAT holds a zlib stream of 3 rows of 1 + 3 bytes, in one final stored block.
        let idat = &png[8 + 25 + 8..];
        assert_eq!(&idat[..2], &[0x78, 0x01]);
        assert_eq!(idat[2], 1, "one final block");
        assert_eq!(u16::from_le_bytes([idat[3], idat[4]]), 12);
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
    }
}
