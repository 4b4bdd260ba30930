//! A raw micro-batch as it leaves the Kafka consumer: per-message partition, offset, key and payload.
//!
//! The consumer's batch path keeps librdkafka's messages alive in the batch ([`RawBatch::push_message`])
//! and the decoder reads their payloads in place: no copy. Messages added with [`RawBatch::push`]
//! (tests, benches, and the rare message served on the consumer's event queue) are copied into `buf`.

use std::ptr::NonNull;

use rdkafka::bindings as rdsys;

/// Marks a span that refers to a held librdkafka message (`(HELD, index into the held messages)`).
const HELD: u32 = u32::MAX;
/// Marks a message without a key in `key_spans`.
const NO_KEY: (u32, u32) = (u32::MAX - 1, 0);

/// One message owned by the batch until it is cleared or dropped; its payload and key live in
/// librdkafka's fetch buffer.
struct HeldMessage(NonNull<rdsys::rd_kafka_message_t>);

// SAFETY: a librdkafka message is not tied to the thread that consumed it; it is read and destroyed
// by one thread at a time (the batch is moved between threads, never shared mutably).
unsafe impl Send for HeldMessage {}
// SAFETY: reading a message's payload, key, partition and offset does not mutate it.
unsafe impl Sync for HeldMessage {}

impl HeldMessage {
    /// # Safety
    /// `len` bytes must be readable at `ptr` (when not null) for as long as `'a`.
    unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> &'a [u8] {
        if ptr.is_null() || len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    }

    fn payload(&self) -> &[u8] {
        // SAFETY: the message is alive while self is, and librdkafka guarantees `len` bytes at
        // `payload`; the slice borrows self.
        unsafe {
            let m = self.0.as_ref();
            Self::bytes(m.payload, m.len)
        }
    }

    fn key(&self) -> Option<&[u8]> {
        // SAFETY: as in `payload`, for `key_len` bytes at `key`.
        unsafe {
            let m = self.0.as_ref();
            (!m.key.is_null()).then(|| Self::bytes(m.key, m.key_len))
        }
    }
}

impl Drop for HeldMessage {
    fn drop(&mut self) {
        // SAFETY: the message came from rd_kafka_consume_batch_queue and is destroyed exactly once.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

/// Raw Kafka messages of one micro-batch.
#[derive(Default)]
pub struct RawBatch {
    /// Copied payloads, each followed by `\n` (messages added with [`RawBatch::push`]).
    pub buf: Vec<u8>,
    /// `(start, end)` of each copied payload in `buf` (end excludes the `\n`), or
    /// `(u32::MAX, i)` for the `i`-th held librdkafka message.
    pub spans: Vec<(u32, u32)>,
    /// Copied keys, concatenated.
    pub key_buf: Vec<u8>,
    /// `(start, end)` of each copied key in `key_buf`, `(u32::MAX - 1, 0)` for no key, or
    /// `(u32::MAX, i)` for the key of the `i`-th held message.
    pub key_spans: Vec<(u32, u32)>,
    /// Kafka partition of each message.
    pub partitions: Vec<i32>,
    /// Kafka offset of each message.
    pub offsets: Vec<i64>,
    held: Vec<HeldMessage>,
}

impl std::fmt::Debug for RawBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBatch")
            .field("messages", &self.len())
            .field("held", &self.held.len())
            .field("copied_bytes", &self.buf.len())
            .finish()
    }
}

impl RawBatch {
    /// An empty batch with room for `rows` messages (copied ones of about 160 bytes).
    pub fn with_capacity(rows: usize) -> Self {
        RawBatch {
            buf: Vec::new(),
            spans: Vec::with_capacity(rows),
            key_buf: Vec::new(),
            key_spans: Vec::with_capacity(rows),
            partitions: Vec::with_capacity(rows),
            offsets: Vec::with_capacity(rows),
            held: Vec::with_capacity(rows),
        }
    }

    /// Appends one message, copying its key and payload.
    pub fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(payload);
        self.spans.push((start, self.buf.len() as u32));
        self.buf.push(b'\n');
        match key {
            Some(k) => {
                let ks = self.key_buf.len() as u32;
                self.key_buf.extend_from_slice(k);
                self.key_spans.push((ks, self.key_buf.len() as u32));
            }
            None => self.key_spans.push(NO_KEY),
        }
        self.partitions.push(partition);
        self.offsets.push(offset);
    }

    /// Appends a message consumed from librdkafka without copying it: the batch owns the message
    /// (destroyed when the batch is cleared or dropped) and reads its payload in place.
    ///
    /// # Safety
    /// `msg` must be a valid message returned by librdkafka (e.g. `rd_kafka_consume_batch_queue`),
    /// without an error, not owned by anything else, and the batch must be cleared or dropped
    /// before the client it came from is destroyed.
    pub unsafe fn push_message(&mut self, msg: NonNull<rdsys::rd_kafka_message_t>) {
        let m = msg.as_ref();
        let (partition, offset) = (m.partition, m.offset);
        let i = self.held.len() as u32;
        self.held.push(HeldMessage(msg));
        self.spans.push((HELD, i));
        self.key_spans.push((HELD, i));
        self.partitions.push(partition);
        self.offsets.push(offset);
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Payload bytes of message `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        match self.spans[i] {
            (HELD, h) => self.held[h as usize].payload(),
            (s, e) => &self.buf[s as usize..e as usize],
        }
    }

    /// Key bytes of message `i`, if it has a key.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        match self.key_spans[i] {
            (HELD, h) => self.held[h as usize].key(),
            k if k == NO_KEY => None,
            (s, e) => Some(&self.key_buf[s as usize..e as usize]),
        }
    }

    /// Bytes of payload in the batch (copied and held).
    pub fn payload_bytes(&self) -> usize {
        (0..self.len()).map(|i| self.payload(i).len()).sum()
    }

    /// Empties the batch (destroying held messages), keeping its allocations for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.key_buf.clear();
        self.key_spans.clear();
        self.partitions.clear();
        self.offsets.clear();
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_messages_keep_their_keys_and_payloads() {
        let mut r = RawBatch::default();
        r.push(0, 5, Some(b"bitcoin"), b"{\"a\":1}");
        r.push(1, 7, None, b"");
        r.push(2, 9, Some(b""), b"x");
        assert_eq!(r.len(), 3);
        assert_eq!(r.payload(0), b"{\"a\":1}");
        assert_eq!(r.key(0), Some(&b"bitcoin"[..]));
        assert_eq!(r.key(1), None);
        assert_eq!(r.payload(1), b"");
        assert_eq!(r.key(2), Some(&b""[..]));
        assert_eq!((r.partitions[2], r.offsets[2]), (2, 9));
        assert_eq!(r.payload_bytes(), 8);
        r.clear();
        assert!(r.is_empty());
    }
}
