//! A raw micro-batch as it leaves the Kafka consumer: payloads joined by `\n` in one buffer (so the
//! decoder reads them in one call without another copy), plus per-message partition, offset and key.

/// Raw Kafka messages of one micro-batch.
#[derive(Debug, Default, Clone)]
pub struct RawBatch {
    /// Payloads, each followed by `\n`.
    pub buf: Vec<u8>,
    /// `(start, end)` of each payload in `buf` (end excludes the `\n`).
    pub spans: Vec<(u32, u32)>,
    /// Keys, concatenated.
    pub key_buf: Vec<u8>,
    /// `(start, end)` of each key in `key_buf`; `start == u32::MAX` means no key.
    pub key_spans: Vec<(u32, u32)>,
    /// Kafka partition of each message.
    pub partitions: Vec<i32>,
    /// Kafka offset of each message.
    pub offsets: Vec<i64>,
    /// Kafka timestamp of each message (epoch ms; [`NO_TIMESTAMP`] when the broker gave none): the
    /// reference time of the future check, so that reading a record again gives the same verdict.
    pub timestamps: Vec<i64>,
}

/// A message without a Kafka timestamp.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// Payload bytes a raw batch reserves per message of its row limit; a batch is cut once its payloads
/// reach that many bytes per row limit (so large messages cannot make one batch unbounded).
pub const BYTES_PER_ROW: usize = 256;

impl RawBatch {
    /// An empty batch with room for `rows` messages of up to 256 bytes. Room is reserved, not
    /// touched: pages count in RSS once written. Reserving too little made the buffer grow by
    /// doubling (a CoinCap frame is about 170 bytes: 8 MiB became 16 MiB per batch, three batches
    /// alive), and growth may copy.
    pub fn with_capacity(rows: usize) -> Self {
        RawBatch {
            buf: Vec::with_capacity(rows * BYTES_PER_ROW),
            spans: Vec::with_capacity(rows),
            key_buf: Vec::with_capacity(rows * 12),
            key_spans: Vec::with_capacity(rows),
            partitions: Vec::with_capacity(rows),
            offsets: Vec::with_capacity(rows),
            timestamps: Vec::with_capacity(rows),
        }
    }

    /// Appends one message without a Kafka timestamp.
    pub fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        self.push_at(partition, offset, NO_TIMESTAMP, key, payload);
    }

    /// Appends one message with its Kafka timestamp (epoch ms, or [`NO_TIMESTAMP`]).
    pub fn push_at(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
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
            None => self.key_spans.push((u32::MAX, 0)),
        }
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.timestamps.push(timestamp);
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
        let (s, e) = self.spans[i];
        &self.buf[s as usize..e as usize]
    }

    /// The Kafka timestamp of message `i`, if it has one.
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        Some(self.timestamps[i]).filter(|t| *t != NO_TIMESTAMP && *t >= 0)
    }

    /// Key bytes of message `i`, if it has a key.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let (s, e) = self.key_spans[i];
        (s != u32::MAX).then(|| &self.key_buf[s as usize..e as usize])
    }

    /// Empties the batch, keeping its allocations for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.key_buf.clear();
        self.key_spans.clear();
        self.partitions.clear();
        self.offsets.clear();
        self.timestamps.clear();
    }
}
