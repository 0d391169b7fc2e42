//! How much one account may store (ASVS 5.0 2.4.1: excessive calls must not lead to
//! garbage-data creation or quota exhaustion). Checked inside the statement that creates or
//! grows a note, against `note_usage`, a row per owner that triggers on `notes` keep current
//! (migrations `0002`): one primary-key read, whatever the owner holds.

/// Notes one account may hold.
pub const MAX_NOTES: i64 = 1_000;
/// Bytes of titles and bodies (UTF-8) one account may hold: 5 MiB, a few hundred full notes.
pub const MAX_BYTES: i64 = 5 * 1024 * 1024;

/// What the client is told when a write would pass either limit.
pub const EXCEEDED: &str =
    "this account holds its maximum of 1,000 notes or 5 MiB of note text; delete or shorten notes first";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_limits() {
        assert_eq!(MAX_NOTES, 1_000);
        assert_eq!(MAX_BYTES, 5 * 1024 * 1024);
        assert!(EXCEEDED.contains("1,000 notes") && EXCEEDED.contains("5 MiB"));
    }
}
