//! Frames for noisy byte streams (a serial console shared with printk).
//!
//! A frame is one line `@@IOB <len> <crc32> <payload>` where `payload` is a
//! protocol line without its newline, `len` its length in bytes and `crc32`
//! its CRC-32 (IEEE) in hex.  [`Deframer`] picks frames out of arbitrary
//! input: kernel messages printed between or even inside our lines, echo of
//! typed commands and line noise are skipped, and a frame that does not
//! check out is dropped rather than trusted.

/// Marks the start of a frame.
pub const MARKER: &str = "@@IOB ";

/// CRC-32 (IEEE 802.3, reflected), bitwise: frames are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Wraps one protocol line (newline optional) in a frame, newline included.
pub fn frame(line: &[u8]) -> Vec<u8> {
    let payload = line.strip_suffix(b"\n").unwrap_or(line);
    let mut out = format!("{MARKER}{} {:08x} ", payload.len(), crc32(payload)).into_bytes();
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// Incremental frame extractor.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    rejected: usize,
}

impl Deframer {
    /// A new, empty extractor.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many marked frames failed their length or checksum so far.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Feeds bytes; returns the payloads of every complete, valid frame.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(start) = find(&self.buf, MARKER.as_bytes()) else {
                // Keep a tail that could be the start of a marker.
                let keep = self.buf.len().min(MARKER.len() - 1);
                self.buf.drain(..self.buf.len() - keep);
                return out;
            };
            self.buf.drain(..start);
            match parse(&self.buf) {
                Parse::Incomplete => {
                    if self.buf.len() > crate::MAX_LINE + 64 {
                        self.rejected += 1;
                        self.buf.drain(..MARKER.len());
                        continue;
                    }
                    return out;
                }
                Parse::Bad => {
                    self.rejected += 1;
                    self.buf.drain(..MARKER.len());
                }
                Parse::Frame { payload, consumed } => {
                    out.push(payload);
                    self.buf.drain(..consumed);
                }
            }
        }
    }
}

enum Parse {
    Incomplete,
    Bad,
    Frame { payload: Vec<u8>, consumed: usize },
}

fn parse(buf: &[u8]) -> Parse {
    let rest = &buf[MARKER.len()..];
    // Header: "<len> <crc> " — at most 10 + 1 + 8 + 1 bytes.
    let Some(sp1) = rest.iter().take(11).position(|&b| b == b' ') else {
        return if rest.len() < 11 {
            Parse::Incomplete
        } else {
            Parse::Bad
        };
    };
    let Some(len) = std::str::from_utf8(&rest[..sp1])
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return Parse::Bad;
    };
    if len > crate::MAX_LINE {
        return Parse::Bad;
    }
    let crc_start = sp1 + 1;
    if rest.len() < crc_start + 9 {
        return Parse::Incomplete;
    }
    let Some(crc) = std::str::from_utf8(&rest[crc_start..crc_start + 8])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
    else {
        return Parse::Bad;
    };
    if rest[crc_start + 8] != b' ' {
        return Parse::Bad;
    }
    let body = crc_start + 9;
    if rest.len() < body + len {
        return Parse::Incomplete;
    }
    let payload = &rest[body..body + len];
    if crc32(payload) != crc {
        return Parse::Bad;
    }
    Parse::Frame {
        payload: payload.to_vec(),
        consumed: MARKER.len() + body + len,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
