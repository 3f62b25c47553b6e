//! A job's secret: 32 random bytes the runner-side executor holds and presents, of which
//! the task sees only the SHA-256.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::AgentError;

/// The secret that lets the runner run stages in one job's task.
#[derive(Clone)]
pub struct JobSecret([u8; 32]);

impl JobSecret {
    /// A fresh secret from the system's random source.
    pub fn generate() -> Result<Self, AgentError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AgentError::Random)?;
        Ok(JobSecret(bytes))
    }

    /// Its SHA-256 in hex: what the task's overrides may show.
    pub fn digest_hex(&self) -> String {
        hex(digest(&SHA256, &self.0).as_ref())
    }

    /// The secret itself in hex, for the job's private record on the runner host (0600),
    /// which the stages after `prepare` read it back from.
    pub fn reveal_hex(&self) -> String {
        hex(&self.0)
    }

    /// The secret [`JobSecret::reveal_hex`] wrote; `None` unless 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        parse_hex(text).map(JobSecret)
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Never the bytes: a secret must not reach a log through `{:?}`.
impl std::fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobSecret(…)")
    }
}

/// A secret digest as the agent reads it: 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Digest([u8; 32]);

impl Digest {
    /// `None` unless `text` is 64 hex digits.
    pub fn parse(text: &str) -> Option<Digest> {
        parse_hex(text).map(Digest)
    }

    /// Whether `candidate` is the secret this is the digest of, in constant time.
    pub fn admits(&self, candidate: &[u8]) -> bool {
        verify_slices_are_equal(digest(&SHA256, candidate).as_ref(), &self.0).is_ok()
    }
}

/// 32 bytes from 64 hex digits.
fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        bytes[i] = (high * 16 + low) as u8;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_itself_passes_its_digest() {
        let secret = JobSecret::generate().unwrap();
        let digest = Digest::parse(&secret.digest_hex()).unwrap();
        assert!(digest.admits(secret.bytes()));
        let other = JobSecret::generate().unwrap();
        assert!(!digest.admits(other.bytes()));
        // Knowing the digest is not knowing the secret.
        assert!(!digest.admits(secret.digest_hex().as_bytes()));
        assert!(!digest.admits(&[]));
        assert_eq!(format!("{secret:?}"), "JobSecret(…)");
        let again = JobSecret::from_hex(&secret.reveal_hex()).unwrap();
        assert!(digest.admits(again.bytes()));
    }

    #[test]
    fn a_digest_is_64_hex_digits() {
        let secret = JobSecret::generate().unwrap();
        let upper = secret.digest_hex().to_uppercase();
        assert!(Digest::parse(&upper).is_some());
        assert!(Digest::parse(&upper[..63]).is_none());
        assert!(Digest::parse(&format!("{}g", &upper[..63])).is_none());
        assert!(Digest::parse("").is_none());
    }
}
