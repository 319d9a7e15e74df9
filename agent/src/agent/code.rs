//! The short verification code a joining node prints on its console; the approver sees the
//! same code next to the pending request. Derived from the node's certificate request, so it
//! changes if someone else's key is swapped in.

use sha2::{Digest, Sha256};

/// `XXXX-XXXX` from an alphabet without look-alikes (no 0/O, 1/I/L).
pub fn verification_code(csr_pem: &str) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let digest = Sha256::digest(csr_pem.as_bytes());
    let chars: String = digest
        .iter()
        .take(8)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_readable() {
        let a = verification_code("csr-a");
        assert_eq!(a, verification_code("csr-a"));
        assert_ne!(a, verification_code("csr-b"));
        assert_eq!(a.len(), 9);
        assert!(a
            .chars()
            .all(|c| c == '-' || (c.is_ascii_alphanumeric() && !"01OIL".contains(c))));
    }
}
