//! Timestamps written digit by digit into a fixed template: the access log and audit events
//! format several per request, and the `time` crate's general formatter (a parsed format
//! description walked item by item) cost more than the rest of building the line or event.

/// Writes `value` into `slot` as zero-padded decimal digits, the last digit at the slot's end.
pub(crate) fn fill(slot: &mut [u8], value: u32) {
    let mut value = value;
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The template once its slots are filled: only ASCII digits and separators, so valid UTF-8.
pub(crate) fn text(template: &[u8]) -> &str {
    std::str::from_utf8(template).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_from_the_right_with_zeros() {
        let mut template = *b"[0000|00]";
        super::fill(&mut template[1..5], 7);
        super::fill(&mut template[6..8], 59);
        assert_eq!(super::text(&template), "[0007|59]");
    }
}
