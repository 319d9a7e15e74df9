//! The short verification code a joining node prints on its console; the approver sees the
//! same code next to the pending request. Derived from the public key in the node's certificate
//! request, by the node and again by the coordinator (which refuses a request whose code does
//! not match): it stays the same across the node's restarts (same key, freshly signed request)
//! and changes if someone else's key is swapped in.

use sha2::{Digest, Sha256};

use super::{csr_public_key, PkiError};

/// `XXXX-XXXX` from an alphabet without look-alikes (no 0/O, 1/I/L).
pub fn verification_code(public_key_der: &[u8]) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let digest = Sha256::digest(public_key_der);
    let chars: String = digest
        .iter()
        .take(8)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// The code for the key a certificate request is for.
pub fn csr_verification_code(csr_pem: &str) -> Result<String, PkiError> {
    csr_public_key(csr_pem).map(|k| verification_code(&k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{csr_for_key, new_key_and_csr};

    #[test]
    fn codes_are_stable_and_readable() {
        let a = verification_code(b"key-a");
        assert_eq!(a, verification_code(b"key-a"));
        assert_ne!(a, verification_code(b"key-b"));
        assert_eq!(a.len(), 9);
        assert!(a
            .chars()
            .all(|c| c == '-' || (c.is_ascii_alphanumeric() && !"01OIL".contains(c))));
    }

    #[test]
    fn a_key_keeps_its_code_across_requests() {
        let (key, first) = new_key_and_csr(3).unwrap();
        let again = csr_for_key(3, &key).unwrap();
        assert_ne!(first, again, "each request is signed afresh");
        assert_eq!(
            csr_verification_code(&first).unwrap(),
            csr_verification_code(&again).unwrap()
        );
        let (_, other) = new_key_and_csr(3).unwrap();
        assert_ne!(
            csr_verification_code(&first).unwrap(),
            csr_verification_code(&other).unwrap()
        );
    }
}
