//! The Protobuf wire format, read from bytes: varints, length-delimited fields, skipping the
//! fields a schema does not declare, and `google.protobuf.Timestamp` messages. Errors are the
//! reason a record is rejected.

/// The reason for a record's rejection: invalid Protobuf, and what was wrong.
pub(super) fn invalid(what: &str) -> String {
    format!("invalid Protobuf: {what}")
}

/// A base-128 varint at `at`.
pub(super) fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| invalid("the record ends inside a varint"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(invalid("a varint longer than 10 bytes"))
}

/// `length` bytes at `at`.
pub(super) fn take<'b>(bytes: &'b [u8], at: &mut usize, length: usize) -> Result<&'b [u8], String> {
    let end = at
        .checked_add(length)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| invalid("the record ends inside a field"))?;
    let taken = &bytes[*at..end];
    *at = end;
    Ok(taken)
}

/// Skips a field of another number.
pub(super) fn skip(bytes: &[u8], at: &mut usize, wire_type: u8) -> Result<(), String> {
    match wire_type {
        0 => varint(bytes, at).map(drop),
        1 => take(bytes, at, 8).map(drop),
        2 => {
            let length = varint(bytes, at)? as usize;
            take(bytes, at, length).map(drop)
        }
        5 => take(bytes, at, 4).map(drop),
        other => Err(invalid(&format!("wire type {other} (groups are not supported)"))),
    }
}

/// A `google.protobuf.Timestamp` (`seconds` = 1, `nanos` = 2) as microseconds since the epoch,
/// starting from the fields an earlier occurrence set.
pub(super) fn timestamp(message: &[u8], mut seconds: i64, mut nanos: i64) -> Result<i64, String> {
    let mut at = 0;
    while at < message.len() {
        let key = varint(message, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => seconds = varint(message, &mut at)? as i64,
            (2, 0) => nanos = i64::from(varint(message, &mut at)? as i32),
            (_, wire_type) => skip(message, &mut at, wire_type as u8)?,
        }
    }
    seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(nanos / 1000))
        .ok_or_else(|| invalid("a Timestamp out of range"))
}
