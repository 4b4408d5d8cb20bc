//! Frames for noisy byte streams (a serial console shared with printk).
//!
//! A frame is one line `@@IOB <len> <crc32> <payload>` where `payload` is a
//! protocol line without its newline, `len` its length in bytes and `crc32`
//! its CRC-32 (IEEE) in hex.  [`Deframer`] picks frames out of arbitrary
//! input: kernel messages printed between our lines are skipped, and so are
//! kernel lines printed into the middle of one (the console prints them
//! whole, ending in `\r\n`, wherever our output happens to be; they are cut
//! out by their timestamp, or by the frame's length if there is only one),
//! as are echo and line noise.  A frame that does not check out is dropped
//! rather than trusted.

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
                Parse::Incomplete => return out,
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

/// `buf` starts with [`MARKER`].  A frame ends at the first bare `\n` (one
/// not preceded by `\r`): the agent writes to a raw console, so its lines end
/// in `\n` alone, while the kernel's console code ends every line it prints
/// with `\r\n` — also when it prints one into the middle of ours.
fn parse(buf: &[u8]) -> Parse {
    let rest = &buf[MARKER.len()..];
    let Some(end) = bare_newline(rest) else {
        return if rest.len() > 2 * crate::MAX_LINE {
            Parse::Bad
        } else {
            Parse::Incomplete
        };
    };
    let consumed = MARKER.len() + end + 1;
    let region = &rest[..end];
    if !region.contains(&b'\r') {
        return checked(region, consumed);
    }
    // Kernel lines inside the frame: drop each from its timestamp to its "\r\n".
    if let Some(clean) = strip_timestamped_lines(region) {
        if let Parse::Frame { payload, consumed } = checked(&clean, consumed) {
            return Parse::Frame { payload, consumed };
        }
    }
    // One line without a (recognisable) timestamp: the header's length
    // says how much was inserted before the "\r\n".
    strip_by_length(region).map_or(Parse::Bad, |clean| checked(&clean, consumed))
}

/// Parses `<len> <crc> <payload>` and checks length and CRC.
fn checked(region: &[u8], consumed: usize) -> Parse {
    let Some((len, crc, body)) = header(region) else {
        return Parse::Bad;
    };
    let payload = &region[body..];
    if payload.len() != len || crc32(payload) != crc {
        return Parse::Bad;
    }
    Parse::Frame {
        payload: payload.to_vec(),
        consumed,
    }
}

/// `<len> <crc32 hex> ` at the start of `region`: (len, crc, payload offset).
fn header(region: &[u8]) -> Option<(usize, u32, usize)> {
    let sp1 = region.iter().take(11).position(|&b| b == b' ')?;
    let len = std::str::from_utf8(&region[..sp1])
        .ok()?
        .parse::<usize>()
        .ok()?;
    let crc_hex = region.get(sp1 + 1..sp1 + 9)?;
    let crc = u32::from_str_radix(std::str::from_utf8(crc_hex).ok()?, 16).ok()?;
    if len > crate::MAX_LINE || region.get(sp1 + 9) != Some(&b' ') {
        return None;
    }
    Some((len, crc, sp1 + 10))
}

fn bare_newline(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// Removes every `[ sss.uuuuuu] text\r\n` (a kernel console line) from
/// `region`, each found by the last timestamp before its `\r\n`.
fn strip_timestamped_lines(region: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(region.len());
    let mut i = 0;
    while i < region.len() {
        if region[i] == b'\r' && region.get(i + 1) == Some(&b'\n') {
            let start = (0..out.len()).rev().find(|&s| timestamp_at(&out[s..]))?;
            out.truncate(start);
            i += 2;
        } else {
            out.push(region[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether `bytes` starts with a printk timestamp `[  123.456789] `.
fn timestamp_at(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"[") else {
        return false;
    };
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let secs = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(rest) = rest.get(secs..).and_then(|r| r.strip_prefix(b".")) else {
        return false;
    };
    let frac = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    secs > 0 && frac > 0 && rest.get(frac..).is_some_and(|r| r.starts_with(b"] "))
}

/// With exactly one inserted line, its length is whatever the region has
/// beyond what the header announces.
fn strip_by_length(region: &[u8]) -> Option<Vec<u8>> {
    let crlf = find(region, b"\r\n")?;
    if find(&region[crlf + 2..], b"\r\n").is_some() {
        return None;
    }
    let (len, _, body) = header(region)?;
    let extra = (region.len() - body).checked_sub(len)?;
    let start = (crlf + 2).checked_sub(extra)?;
    if start < body {
        return None;
    }
    let mut out = region[..start].to_vec();
    out.extend_from_slice(&region[crlf + 2..]);
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
